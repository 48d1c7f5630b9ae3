package fakeslack

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/gorilla/websocket"
)

// Start starts a fake Slack on a loopback port without a test: `pgkill
// demo` runs one. Close stops it. New is the same for tests.
func Start() (*Server, error) {
	s := &Server{
		changed:   make(chan struct{}),
		acks:      map[string]Ack{},
		sent:      map[string]time.Time{},
		hooks:     map[string]hook{},
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
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.api)
	mux.HandleFunc("/link/", s.link)
	mux.HandleFunc("/hooks/", s.hook)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	s.srv.Start()
	return s, nil
}

// Changed returns a channel closed at the next change (a call, a message,
// an ack, a connection): wait on it, then read the state and ask again.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Send delivers an envelope of type typ on one of the open sockets (in
// turn, as Slack spreads envelopes over an app's connections), waiting up
// to 15 s for one, and returns its ID.
func (s *Server) Send(typ string, payload any) (string, error) {
	deadline := time.After(15 * time.Second)
	for {
		ch := s.Changed()
		if s.Connected() {
			break
		}
		select {
		case <-ch:
		case <-deadline:
			return "", fmt.Errorf("no Socket Mode connection after 15s")
		}
	}
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("env-%d", s.seq)
	s.sent[id] = time.Now()
	var conn *websocket.Conn
	if len(s.ws) > 0 {
		conn = s.ws[s.rr%len(s.ws)]
		s.rr++
		s.delivered[id] = s.serial[conn]
	}
	s.mu.Unlock()
	if conn == nil {
		return "", fmt.Errorf("the Socket Mode connection closed before envelope %s could be sent", id)
	}
	env := map[string]any{"envelope_id": id, "type": typ, "payload": payload, "accepts_response_payload": typ == "slash_commands"}
	if err := s.write(conn, env); err != nil {
		return "", fmt.Errorf("send envelope: %w", err)
	}
	return id, nil
}

// Command sends /command text as user in channel and returns the envelope
// ID.
func (s *Server) Command(command, user, channel, text string) (string, error) {
	payload := map[string]any{
		"token": "vtok", "team_id": s.sender(), "team_domain": "example", "channel_id": channel, "channel_name": "incident",
		"user_id": user, "user_name": user, "command": command, "text": text, "api_app_id": AppID,
		"is_enterprise_install": "false", "response_url": s.newHook(channel, user, ""), "trigger_id": s.newTrigger(user),
	}
	return s.Send("slash_commands", payload)
}

// Press presses the button actionID (whose value contains valueHas) on
// message m as user and returns the envelope ID; ErrNoButton if m has none.
func (s *Server) Press(user string, m Message, actionID, valueHas string) (string, error) {
	blockID, value, err := FindButton(m, actionID, valueHas)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q in message %s", err, actionID, valueHas, m.TS)
	}
	return s.Send("interactive", s.clickPayload(user, m, actionID, blockID, value))
}

func (s *Server) clickPayload(user string, m Message, actionID, blockID, value string) map[string]any {
	return map[string]any{
		"type":       "block_actions",
		"user":       map[string]any{"id": user, "username": user, "name": user, "team_id": s.sender()},
		"api_app_id": AppID, "token": "vtok",
		"container":    map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": m.Ephemeral},
		"trigger_id":   s.newTrigger(user),
		"team":         map[string]any{"id": s.sender(), "domain": "example"},
		"channel":      map[string]any{"id": m.Channel, "name": "incident"},
		"message":      map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "thread_ts": m.ThreadTS},
		"state":        map[string]any{"values": map[string]any{}},
		"response_url": s.newHook(m.Channel, user, m.TS),
		"actions": []any{map[string]any{
			"action_id": actionID, "block_id": blockID, "type": "button", "value": value,
			"text": map[string]any{"type": "plain_text", "text": actionID}, "action_ts": fmt.Sprintf("%d.000001", time.Now().Unix()),
		}},
	}
}

// PressValue presses the button of message m with exactly this action ID,
// block ID and value, as user; ErrNoButton if m has no such button.
func (s *Server) PressValue(user string, m Message, actionID, blockID, value string) (string, error) {
	var bs []struct {
		BlockID  string `json:"block_id"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(m.Blocks, &bs); err != nil {
		return "", fmt.Errorf("blocks: %w", err)
	}
	for _, b := range bs {
		for _, e := range b.Elements {
			if b.BlockID == blockID && e.ActionID == actionID && e.Value == value {
				return s.Send("interactive", s.clickPayload(user, m, actionID, blockID, value))
			}
		}
	}
	return "", fmt.Errorf("%w: %s in block %s of message %s", ErrNoButton, actionID, blockID, m.TS)
}

// SubmitValues submits modal as its user with the given input values (block
// ID → action ID → text), as Submit does without a test, and returns the
// envelope ID: AwaitAck answers with its ack, which carries any
// response_action.
func (s *Server) SubmitValues(m Modal, values map[string]map[string]string) (string, error) {
	payload, err := s.submission(m, values)
	if err != nil {
		return "", err
	}
	return s.Send("interactive", payload)
}

// submission is the view_submission payload of modal m with these values.
func (s *Server) submission(m Modal, values map[string]map[string]string) (map[string]any, error) {
	var view map[string]any
	if err := json.Unmarshal(m.View, &view); err != nil {
		return nil, fmt.Errorf("modal: %w", err)
	}
	state := map[string]any{}
	for block, actions := range values {
		acts := map[string]any{}
		for action, text := range actions {
			acts[action] = map[string]any{"type": "plain_text_input", "value": text}
		}
		state[block] = acts
	}
	view["id"], view["state"] = "V1", map[string]any{"values": state}
	return map[string]any{
		"type":       "view_submission",
		"team":       map[string]any{"id": s.sender(), "domain": "example"},
		"user":       map[string]any{"id": m.User, "username": m.User, "name": m.User, "team_id": s.sender()},
		"api_app_id": AppID, "token": "vtok", "trigger_id": s.newTrigger(m.User),
		"view": view,
	}, nil
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
