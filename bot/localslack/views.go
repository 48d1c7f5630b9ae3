package localslack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// TriggerLifetime is Slack's: views.open with an older trigger_id fails
// with expired_trigger_id.
const TriggerLifetime = 3 * time.Second

// Modal is a view opened with views.open, as the user sees it.
type Modal struct {
	User      string
	TriggerID string
	View      json.RawMessage
	Opened    time.Time
}

type trigger struct {
	user string
	at   time.Time
}

// newTrigger issues a trigger_id for an envelope sent on behalf of user.
func (s *Server) newTrigger(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("%d.%d.trig", 1000+s.seq, s.seq)
	s.triggers[id] = trigger{user: user, at: time.Now()}
	return id
}

// openView serves views.open; call with s.mu held.
func (s *Server) openView(w http.ResponseWriter, p map[string]string) {
	t, ok := s.triggers[p["trigger_id"]]
	switch {
	case !ok:
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_trigger_id"})
		return
	case time.Since(t.at) > TriggerLifetime:
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "expired_trigger_id"})
		return
	}
	delete(s.triggers, p["trigger_id"]) // a trigger opens one view
	view := readable([]byte(p["view"]))
	s.check("views.open", viewBlocks(view))
	s.modals = append(s.modals, Modal{User: t.user, TriggerID: p["trigger_id"], View: view, Opened: time.Now()})
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "view": map[string]any{"id": fmt.Sprintf("V%d", len(s.modals))}})
}

func viewBlocks(view []byte) string {
	var v struct {
		Blocks json.RawMessage `json:"blocks"`
	}
	_ = json.Unmarshal(view, &v)
	return string(v.Blocks)
}

// Modals returns the views opened for user ("" for all), oldest first.
func (s *Server) Modals(user string) []Modal {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Modal
	for _, m := range s.modals {
		if user == "" || m.User == user {
			out = append(out, m)
		}
	}
	return out
}

// SubmitValues submits modal as its user with the given input values
// (block ID → action ID → text) and returns the envelope ID: its ack
// (AwaitAck) carries any response_action.
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
