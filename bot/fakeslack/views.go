package fakeslack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
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
	if s.triggers == nil {
		s.triggers = map[string]trigger{}
	}
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

// Submit submits modal as its user with the given input values (block ID →
// action ID → text) and returns the envelope ID; its ack carries any
// response_action.
func (s *Server) Submit(tb testing.TB, m Modal, values map[string]map[string]string) string {
	tb.Helper()
	payload, err := s.submission(m, values)
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	return s.send(tb, "interactive", payload)
}
