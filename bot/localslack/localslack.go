// Package localslack is Slack on a loopback port, for `pgkill demo` and the
// end-to-end tests: real Socket Mode over a real WebSocket, the Web API
// methods pgkill uses, and people typing commands and pressing buttons.
package localslack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/loopback"
)

// The workspace and app every envelope names.
const (
	TeamID = "T111"
	AppID  = "A111"
)

// AckDeadline is Slack's: an envelope not acknowledged within it shows the
// user an error.
const AckDeadline = 3 * time.Second

// Options configure a Server.
type Options struct {
	// AppToken (xapp-…) opens Socket Mode connections; BotToken (xoxb-…)
	// calls the Web API. Empty: a random one, so that nothing but the app
	// given it can use this Slack.
	AppToken, BotToken string
}

// Call is one Web API request.
type Call struct {
	Method string
	Params map[string]string // form fields or top-level JSON fields
	Status int               // the HTTP status answered
}

// Message is a message as the channel shows it.
type Message struct {
	Channel   string
	TS        string // as Slack's: Unix seconds, a dot, and a serial
	ThreadTS  string
	User      string // for ephemeral messages: who sees it
	Ephemeral bool
	Text      string
	Blocks    json.RawMessage
	Updates   int               // chat.update calls on it
	Versions  []json.RawMessage // every blocks value it has had, oldest first
	Via       string            // the method that posted it, "response_url" or "ack"
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

// hook is what a response_url answers for: the interaction's channel, its
// user, and the message its button was on ("" for a command).
type hook struct {
	channel, user, messageTS string
}

// envelope is one sent: when, and for a slash command who typed it where
// (its ack may carry the answer they see).
type envelope struct {
	at            time.Time
	typ           string
	channel, user string
}

// Server is a local Slack. All methods are safe for concurrent use.
type Server struct {
	srv      *http.Server
	listener net.Listener
	url      string // http://127.0.0.1:port
	appToken string
	botToken string

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	calls       []Call
	messages    []*Message
	acks        map[string]Ack
	sent        map[string]envelope
	hooks       map[string]hook
	tickets     map[string]bool // issued by apps.connections.open, each good for one connection
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
	serveDone   chan struct{}
}

// Start starts a Slack on a free loopback port. It answers only requests
// addressed to 127.0.0.1 or localhost and from no other web site's page
// (bot/loopback), and only those carrying its tokens; Close stops it.
func Start(opts Options) (*Server, error) {
	s := &Server{
		appToken:  opts.AppToken,
		botToken:  opts.BotToken,
		changed:   make(chan struct{}),
		acks:      map[string]Ack{},
		sent:      map[string]envelope{},
		hooks:     map[string]hook{},
		tickets:   map[string]bool{},
		groups:    map[string][]string{},
		limited:   map[string][]int{},
		failing:   map[string]int{},
		stalls:    map[string]chan struct{}{},
		stalled:   map[string]int{},
		pinging:   true,
		pingEvery: 200 * time.Millisecond,
		maxConns:  1,
		delivered: map[string]int{},
		serial:    map[*websocket.Conn]int{},
		triggers:  map[string]trigger{},
		serveDone: make(chan struct{}),
	}
	if s.appToken == "" {
		s.appToken = "xapp-1-" + AppID + "-" + rand.Text()
	}
	if s.botToken == "" {
		s.botToken = "xoxb-" + rand.Text()
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", loopback.Guard(http.HandlerFunc(s.api)))
	mux.Handle("/hooks/", loopback.Guard(http.HandlerFunc(s.hook)))
	mux.Handle("/link/", loopback.Guard(http.HandlerFunc(s.link), slackGoOrigin))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.listener, s.url = l, "http://"+l.Addr().String()
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.serveDone)
		_ = s.srv.Serve(l) // ErrServerClosed at Close
	}()
	return s, nil
}

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	ws := append([]*websocket.Conn(nil), s.ws...)
	s.mu.Unlock()
	for _, c := range ws {
		c.Close()
	}
	_ = s.srv.Close()
	<-s.serveDone
}

// APIURL is what SLACK_API_URL should be.
func (s *Server) APIURL() string { return s.url + "/api/" }

// AppToken is the token that opens Socket Mode connections
// (SLACK_APP_TOKEN).
func (s *Server) AppToken() string { return s.appToken }

// BotToken is the token the Web API answers (SLACK_BOT_TOKEN).
func (s *Server) BotToken() string { return s.botToken }

// Changed returns a channel closed at the next change (a call, a message,
// an ack, a connection): wait on it, then read the state and ask again.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// notify wakes every waiter; call with s.mu held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
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

// Ephemerals returns what user was shown privately in channel.
func (s *Server) Ephemerals(channel, user string) []Message {
	return s.Messages(func(m Message) bool { return m.Ephemeral && m.Channel == channel && m.User == user })
}

// Violations lists every Block Kit limit breach, late ack and unexpected
// frame seen so far.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Ack returns the acknowledgement of envelope id, if it came.
func (s *Server) Ack(id string) (Ack, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.acks[id]
	return a, ok
}

// AwaitAck waits until envelope id is acknowledged or ctx ends.
func (s *Server) AwaitAck(ctx context.Context, id string) (Ack, error) {
	for {
		changed := s.Changed()
		if a, ok := s.Ack(id); ok {
			return a, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Ack{}, fmt.Errorf("no ack of %s: %w", id, context.Cause(ctx))
		}
	}
}

// SetGroup sets a user group's members, for usergroups.users.list.
func (s *Server) SetGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = members
}

// FromTeam makes the envelopes sent from now on come from users of another
// workspace (a shared channel of another organisation); "" goes back to
// this app's own workspace.
func (s *Server) FromTeam(team string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fromTeam = team
}

func (s *Server) sender() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fromTeam != "" {
		return s.fromTeam
	}
	return TeamID
}

// nextTS returns a new message ts; call with s.mu held.
func (s *Server) nextTS() string {
	s.seq++
	return fmt.Sprintf("%d.%06d", time.Now().Unix(), s.seq%1_000_000)
}

// check records every Block Kit breach of a message; it returns false when
// Slack would refuse the message whole for its total text
// (msg_blocks_too_long). Call with s.mu held.
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

// readable re-encodes JSON without Go's \u003c-style escapes, so that
// "<@U123>" reads as Slack would show it.
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

// maxBody bounds a request body: Slack's own limit on a message is far
// below it.
const maxBody = 1 << 20

// params reads a form-encoded or JSON body into flat strings.
func params(w http.ResponseWriter, r *http.Request) map[string]string {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
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

// ErrNoConnection: no Socket Mode connection is open to send on.
var ErrNoConnection = errors.New("no Socket Mode connection")
