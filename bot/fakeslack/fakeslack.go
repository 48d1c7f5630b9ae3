// Package fakeslack is a Slack stand-in for end-to-end tests: it speaks the
// real Socket Mode protocol over a real WebSocket (apps.connections.open,
// hello, pings, envelopes, acks, disconnect) and the Web API methods pgkill
// uses, and records everything so tests can assert on it. It also checks
// every message against Block Kit's limits and every ack against the 3 s
// deadline. Several replicas of one app may each keep a connection
// (AllowConnections): each envelope then goes to one of them, round-robin,
// as Slack spreads them.
package fakeslack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgkill/pgkill/blocks"
)

const (
	AppToken = "xapp-1-A111-fake-app-token"
	BotToken = "xoxb-111-fake-bot-token"
	TeamID   = "T111"
	AppID    = "A111"
)

// AckDeadline is Slack's: an envelope not acknowledged within it shows the
// user an error.
const AckDeadline = 3 * time.Second

// Call is one Web API request.
type Call struct {
	Method string
	Params map[string]string // form fields or top-level JSON fields
	Status int               // the HTTP status answered
}

// Message is a message as the channel shows it.
type Message struct {
	Channel   string
	TS        string
	ThreadTS  string
	User      string // for ephemeral messages: who sees it
	Ephemeral bool
	Text      string
	Blocks    json.RawMessage
	Updates   int               // chat.update calls on it
	Versions  []json.RawMessage // every blocks value it has had, oldest first
	Via       string
}

// Version returns the message as it was at version i (0 = as posted): a
// stale copy, as a client that has not redrawn it would show.
func (m Message) Version(i int) Message {
	m.Blocks = m.Versions[i]
	return m
}

// Ack is an envelope's acknowledgement.
type Ack struct {
	Payload json.RawMessage
	After   time.Duration
}

type hook struct {
	channel, user, messageTS string
}

// Server is the fake. All methods are safe for concurrent use.
type Server struct {
	srv *httptest.Server

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	calls       []Call
	messages    []*Message
	acks        map[string]Ack
	sent        map[string]time.Time
	hooks       map[string]hook
	hookPosts   []Message
	groups      map[string][]string
	limited     map[string][]int // method -> Retry-After seconds of the next 429 answers
	failing     map[string]int   // method -> how many of its next calls answer HTTP 500
	stalls      map[string]chan struct{}
	stalled     map[string]int // method -> calls held by a stall so far
	violations  []string
	scopes      map[string]bool // nil: all granted
	connections int
	seq         int
	ws          []*websocket.Conn // open Socket Mode connections, oldest first
	maxConns    int               // how many may be open at once (AllowConnections)
	rr          int               // round-robin position of the next envelope
	delivered   map[string]int    // envelope ID -> serial of the connection it went to
	serial      map[*websocket.Conn]int
	wsMu        sync.Mutex // gorilla allows one writer at a time
	pinging     bool
	fromTeam    string // the team of the users sending envelopes; "" is TeamID
	triggers    map[string]trigger
	modals      []Modal
	pingEvery   time.Duration
}

// New starts a fake Slack; it stops when the test ends (cancel the bot's
// context first: the test's cleanups run in reverse order).
func New(tb testing.TB) *Server {
	s, err := Start()
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server and drops the socket.
func (s *Server) Close() {
	s.mu.Lock()
	ws := append([]*websocket.Conn(nil), s.ws...)
	s.mu.Unlock()
	for _, c := range ws {
		c.Close()
	}
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// APIURL is what SLACK_API_URL should be.
func (s *Server) APIURL() string { return s.srv.URL + "/api/" }

// notify wakes every waiter; call with s.mu held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Eventually waits until cond (called with nothing locked) holds, or fails
// the test after timeout.
func (s *Server) Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond): // conditions on the database change without us
		case <-deadline:
			tb.Fatalf("fakeslack: timed out after %v waiting for %s", timeout, what)
		}
	}
}

// SetGroup sets a user group's members, for usergroups.users.list.
func (s *Server) SetGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = members
}

// RateLimit makes the next len(retryAfter) calls of method answer 429 with
// those Retry-After values (seconds).
func (s *Server) RateLimit(method string, retryAfter ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited[method] = append(s.limited[method], retryAfter...)
}

// Calls returns the Web API calls of method ("" for all).
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns copies of the messages that match (nil matches all).
func (s *Server) Messages(match func(Message) bool) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if match == nil || match(*m) {
			out = append(out, *m)
		}
	}
	return out
}

// Message returns the current state of the message at channel/ts.
func (s *Server) Message(channel, ts string) (Message, bool) {
	for _, m := range s.Messages(func(m Message) bool { return m.Channel == channel && m.TS == ts }) {
		return m, true
	}
	return Message{}, false
}

// Violations lists every Block Kit limit breach and late ack seen so far.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Connections counts Socket Mode connections opened so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// Connected reports whether a socket is open now.
func (s *Server) Connected() bool { return s.Live() > 0 }

// Live counts the Socket Mode connections open now.
func (s *Server) Live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ws)
}

// Ack returns the acknowledgement of envelope id, if it came.
func (s *Server) Ack(id string) (Ack, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.acks[id]
	return a, ok
}

// WaitAck waits for envelope id's acknowledgement.
func (s *Server) WaitAck(tb testing.TB, id string) Ack {
	tb.Helper()
	var a Ack
	s.Eventually(tb, 10*time.Second, "ack of "+id, func() bool {
		var ok bool
		a, ok = s.Ack(id)
		return ok
	})
	return a
}

// StopPings stops the WebSocket pings: slack-go then declares the
// connection dead and reconnects.
func (s *Server) StopPings() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pinging = false
}

func (s *Server) nextTS() string {
	s.seq++
	return fmt.Sprintf("%d.%06d", 1795576440+s.seq, s.seq)
}

// check records every Block Kit breach of a message; it returns false when
// Slack would refuse the message whole for its total text
// (msg_blocks_too_long).
func (s *Server) check(where string, blocksJSON string) bool {
	if blocksJSON == "" || blocksJSON == "null" {
		return true
	}
	for _, v := range blocks.Violations([]byte(blocksJSON)) {
		s.violations = append(s.violations, where+": "+v)
	}
	if n := blocks.TextLength([]byte(blocksJSON)); n > blocks.MessageTextLimit {
		s.violations = append(s.violations, fmt.Sprintf("%s: msg_blocks_too_long: %d characters of text, over %d", where, n, blocks.MessageTextLimit))
		return false
	}
	return true
}

// readable re-encodes JSON without Go's \u003c-style escapes, so tests can
// look for "<@U123>" as Slack would show it.
func readable(raw []byte) []byte {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return raw
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return raw
	}
	return bytes.TrimSpace(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// params reads a form-encoded or JSON body into flat strings.
func params(r *http.Request) map[string]string {
	out := map[string]string{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		_ = json.NewDecoder(r.Body).Decode(&m)
		for k, v := range m {
			switch v := v.(type) {
			case string:
				out[k] = v
			default:
				b, _ := json.Marshal(v)
				out[k] = string(b)
			}
		}
		return out
	}
	_ = r.ParseForm()
	for k := range r.Form {
		out[k] = r.Form.Get(k)
	}
	return out
}
