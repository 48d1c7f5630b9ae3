package localslack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/websocket"
)

// slackGoOrigin is the Origin slack-go dials Socket Mode with. A browser
// sets a page's own origin there, which no site but Slack's can make this.
const slackGoOrigin = "https://api.slack.com"

// upgrader takes the handshakes loopback.Guard let through: no Origin (a
// client that is not a browser) or slack-go's.
var upgrader = websocket.Upgrader{CheckOrigin: func(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o == "" || o == slackGoOrigin
}}

// link is the Socket Mode WebSocket, opened with a ticket from
// apps.connections.open (each ticket once): hello first, pings to keep it
// alive, and a read loop recording acks. Up to AllowConnections may be
// open at once (1 by default: a new one replaces the oldest, as for one
// slack-go client reconnecting); hello says how many are.
func (s *Server) link(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	ok := s.tickets[ticket]
	delete(s.tickets, ticket)
	s.mu.Unlock()
	if !ok {
		http.Error(w, "unknown or used ticket: open a connection with apps.connections.open and the app token", http.StatusForbidden)
		return
	}
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
		"debug_info":      map[string]any{"host": "localslack", "build_number": 1, "approximate_connection_time": 18060},
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
	conn.SetReadLimit(maxBody)
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		s.acked(data)
	}
}

// acked records an ack frame; a slash command's ack may carry the answer
// its user sees, which Slack shows as a reply (ephemeral unless it says
// in_channel).
func (s *Server) acked(data []byte) {
	var ack struct {
		EnvelopeID string          `json:"envelope_id"`
		Payload    json.RawMessage `json:"payload"`
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notify()
	if err := json.Unmarshal(data, &ack); err != nil || ack.EnvelopeID == "" {
		s.violations = append(s.violations, "unexpected frame from the app: "+string(data))
		return
	}
	env := s.sent[ack.EnvelopeID]
	after := time.Since(env.at)
	s.acks[ack.EnvelopeID] = Ack{Payload: readable(ack.Payload), After: after}
	if after > AckDeadline {
		s.violations = append(s.violations, fmt.Sprintf("envelope %s acked after %v", ack.EnvelopeID, after))
	}
	if env.typ != "slash_commands" || len(ack.Payload) == 0 {
		return
	}
	var reply struct {
		Text         string          `json:"text"`
		Blocks       json.RawMessage `json:"blocks"`
		ResponseType string          `json:"response_type"`
	}
	if err := json.Unmarshal(ack.Payload, &reply); err != nil {
		s.violations = append(s.violations, fmt.Sprintf("envelope %s: an ack payload that is not a message: %v", ack.EnvelopeID, err))
		return
	}
	if reply.Text == "" && (len(reply.Blocks) == 0 || string(reply.Blocks) == "null") {
		return
	}
	if !s.check("ack", string(reply.Blocks)) {
		return
	}
	s.answer(Message{Channel: env.channel, Text: reply.Text, Blocks: readable(reply.Blocks), Via: "ack"}, env.user, reply.ResponseType)
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

// Delivered returns the serial number (1 for the first connection opened,
// 2 for the next …) of the connection envelope id went to.
func (s *Server) Delivered(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[id]
}

// Send delivers an envelope of type typ on one of the open sockets (in
// turn, as Slack spreads envelopes over an app's connections), waiting up
// to 15 s for one, and returns its ID.
func (s *Server) Send(typ string, payload any) (string, error) {
	return s.send(envelope{typ: typ}, payload)
}

func (s *Server) send(env envelope, payload any) (string, error) {
	deadline := time.After(15 * time.Second)
	for {
		ch := s.Changed()
		if s.Connected() {
			break
		}
		select {
		case <-ch:
		case <-deadline:
			return "", fmt.Errorf("%w after 15s", ErrNoConnection)
		}
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("env-%d", s.seq)
	env.at = time.Now()
	s.sent[id] = env
	var conn *websocket.Conn
	if len(s.ws) > 0 {
		conn = s.ws[s.rr%len(s.ws)]
		s.rr++
		s.delivered[id] = s.serial[conn]
	}
	s.mu.Unlock()
	if conn == nil {
		return "", fmt.Errorf("%w: it closed before envelope %s could be sent", ErrNoConnection, id)
	}
	msg := map[string]any{"envelope_id": id, "type": env.typ, "payload": payload, "accepts_response_payload": env.typ == "slash_commands"}
	if err := s.write(conn, msg); err != nil {
		return "", fmt.Errorf("send envelope: %w", err)
	}
	return id, nil
}
