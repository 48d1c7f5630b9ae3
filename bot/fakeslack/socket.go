package fakeslack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// slack-go dials with Origin: https://api.slack.com, which gorilla's default
// origin check would refuse.
var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// link is the Socket Mode WebSocket: hello first, pings to keep it alive,
// and a read loop recording acks. Up to AllowConnections may be open at
// once (1 by default: a new one replaces the oldest, as for one slack-go
// client reconnecting); hello says how many are.
func (s *Server) link(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	for len(s.ws) >= s.maxConns {
		s.ws[0].Close()
		s.ws = s.ws[1:]
	}
	s.ws = append(s.ws, conn)
	s.connections++
	s.serial[conn] = s.connections
	open := len(s.ws)
	s.notify()
	s.mu.Unlock()

	hello := map[string]any{"type": "hello", "num_connections": open,
		"debug_info":      map[string]any{"host": "fakeslack", "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": AppID}}
	if err := s.write(conn, hello); err != nil {
		return
	}
	done := make(chan struct{})
	go s.ping(conn, done)
	defer func() {
		close(done)
		s.mu.Lock()
		if i := slices.Index(s.ws, conn); i >= 0 {
			s.ws = slices.Delete(s.ws, i, i+1)
		}
		s.notify()
		s.mu.Unlock()
		conn.Close()
	}()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(data, &ack); err != nil || ack.EnvelopeID == "" {
			s.mu.Lock()
			s.violations = append(s.violations, "unexpected frame from the app: "+string(data))
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		after := time.Since(s.sent[ack.EnvelopeID])
		s.acks[ack.EnvelopeID] = Ack{Payload: readable(ack.Payload), After: after}
		if after > AckDeadline {
			s.violations = append(s.violations, fmt.Sprintf("envelope %s acked after %v", ack.EnvelopeID, after))
		}
		s.notify()
		s.mu.Unlock()
	}
}

func (s *Server) ping(conn *websocket.Conn, done chan struct{}) {
	t := time.NewTicker(s.pingEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.mu.Lock()
			on := s.pinging
			s.mu.Unlock()
			if !on {
				continue
			}
			s.wsMu.Lock()
			err := conn.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
			s.wsMu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

func (s *Server) write(conn *websocket.Conn, v any) error {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return conn.WriteJSON(v)
}

// AllowConnections lets up to n Socket Mode connections of the app be open
// at once (Slack allows 10), as several replicas each keep one; each
// envelope then goes to one of them, round-robin.
func (s *Server) AllowConnections(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxConns = max(n, 1)
}

// Delivered returns the serial number (1 for the first connection opened,
// 2 for the next …) of the connection envelope id went to.
func (s *Server) Delivered(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[id]
}

// send delivers an envelope on one open socket (the next, round-robin),
// waiting for one.
func (s *Server) send(tb testing.TB, typ string, payload any) string {
	tb.Helper()
	id, err := s.Send(typ, payload)
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	return id
}

func (s *Server) newHook(channel, user, messageTS string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	path := fmt.Sprintf("/hooks/%s/%d", TeamID, s.seq)
	s.hooks[path] = hook{channel: channel, user: user, messageTS: messageTS}
	return s.srv.URL + path
}

// SlashCommand sends /command text as user in channel and returns the
// envelope ID.
func (s *Server) SlashCommand(tb testing.TB, command, user, channel, text string) string {
	tb.Helper()
	id, err := s.Command(command, user, channel, text)
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	return id
}

// ErrNoButton: the message has no button with that action ID (and value).
var ErrNoButton = errors.New("no such button")

// Click presses the button actionID (whose value contains valueHas) on the
// message at channel/ts, as user; it returns the envelope ID.
func (s *Server) Click(tb testing.TB, user string, m Message, actionID, valueHas string) string {
	tb.Helper()
	blockID, value, err := FindButton(m, actionID, valueHas)
	if err != nil {
		tb.Fatalf("fakeslack: %v: %s %q in message %s", err, actionID, valueHas, m.TS)
	}
	return s.ClickValue(tb, user, m, actionID, blockID, value)
}

// ClickValue presses a button with an arbitrary value (e.g. a stale or
// forged one).
func (s *Server) ClickValue(tb testing.TB, user string, m Message, actionID, blockID, value string) string {
	tb.Helper()
	return s.send(tb, "interactive", s.clickPayload(user, m, actionID, blockID, value))
}

// FindButton finds a button in a message's blocks.
func FindButton(m Message, actionID, valueHas string) (blockID, value string, err error) {
	var bs []struct {
		BlockID  string `json:"block_id"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(m.Blocks, &bs); err != nil {
		return "", "", fmt.Errorf("blocks: %w", err)
	}
	for _, b := range bs {
		for _, e := range b.Elements {
			if e.ActionID == actionID && strings.Contains(e.Value, valueHas) {
				return b.BlockID, e.Value, nil
			}
		}
	}
	return "", "", ErrNoButton
}

// Disconnect sends Slack's disconnect message on every open connection
// (slack-go reconnects at once).
func (s *Server) Disconnect(tb testing.TB, reason string) {
	tb.Helper()
	s.mu.Lock()
	conns := slices.Clone(s.ws)
	s.mu.Unlock()
	if len(conns) == 0 {
		tb.Fatal("fakeslack: no connection to disconnect")
	}
	for _, conn := range conns {
		if err := s.write(conn, map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "fakeslack"}}); err != nil {
			tb.Fatal(err)
		}
	}
}

// DropSocket closes every WebSocket without a word, as a network failure
// would.
func (s *Server) DropSocket() {
	s.mu.Lock()
	conns := slices.Clone(s.ws)
	s.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
	}
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
