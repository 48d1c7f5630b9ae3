package localslack

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// scopeOf is the bot scope each method needs, as Slack documents it.
var scopeOf = map[string]string{
	"chat.postMessage":      "chat:write",
	"chat.update":           "chat:write",
	"chat.postEphemeral":    "chat:write",
	"usergroups.users.list": "usergroups:read",
	"users.info":            "users:read",
}

// MethodsNeeding lists the methods that need scope.
func MethodsNeeding(scope string) []string {
	var out []string
	for m, s := range scopeOf {
		if s == scope {
			out = append(out, m)
		}
	}
	return out
}

// Grant limits the bot token to these scopes: a call needing another gets
// missing_scope, as from Slack. Without Grant every scope is granted.
func (s *Server) Grant(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = map[string]bool{}
	for _, sc := range scopes {
		s.scopes[sc] = true
	}
}

// api serves the Web API methods pgkill uses. Every call needs the bot
// token, but apps.connections.open, which needs the app token.
func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	p := params(w, r)
	token := p["token"]
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		token = strings.TrimPrefix(auth, "Bearer ")
	}

	if !s.stall(r, method, p) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notify()
	call := Call{Method: method, Params: p, Status: http.StatusOK}
	if s.failing[method] > 0 {
		s.failing[method]--
		call.Status = http.StatusInternalServerError
		s.calls = append(s.calls, call)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"ok": false, "error": "internal_error"})
		return
	}
	if ra := s.limited[method]; len(ra) > 0 {
		s.limited[method] = ra[1:]
		call.Status = http.StatusTooManyRequests
		s.calls = append(s.calls, call)
		w.Header().Set("Retry-After", strconv.Itoa(ra[0]))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"ok": false, "error": "ratelimited"})
		return
	}
	s.calls = append(s.calls, call)

	want := s.botToken
	if method == "apps.connections.open" {
		want = s.appToken
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "invalid_auth"})
		return
	}
	if need := scopeOf[method]; need != "" && s.scopes != nil && !s.scopes[need] {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "missing_scope", "needed": need})
		return
	}
	switch method {
	case "apps.connections.open":
		ticket := rand.Text()
		s.tickets[ticket] = true
		url := fmt.Sprintf("ws://%s/link/?ticket=%s&app_id=%s", r.Host, ticket, AppID)
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "url": url})
	case "auth.test":
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "team_id": TeamID, "user_id": "UBOT", "bot_id": "BBOT"})
	case "chat.postMessage":
		if p["channel"] == "" {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "channel_not_found"})
			return
		}
		if !s.check(method, p["blocks"]) {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "msg_blocks_too_long"})
			return
		}
		m := &Message{Channel: p["channel"], TS: s.nextTS(), ThreadTS: p["thread_ts"], Text: p["text"], Blocks: readable([]byte(p["blocks"])), Via: method}
		m.Versions = append(m.Versions, m.Blocks)
		s.messages = append(s.messages, m)
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS})
	case "chat.update":
		for _, m := range s.messages {
			if m.Channel == p["channel"] && m.TS == p["ts"] {
				if !s.check(method, p["blocks"]) {
					writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "msg_blocks_too_long"})
					return
				}
				m.Text, m.Blocks = p["text"], readable([]byte(p["blocks"]))
				m.Updates++
				m.Versions = append(m.Versions, m.Blocks)
				writeJSON(w, http.StatusOK, map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "message_not_found"})
	case "chat.postEphemeral":
		if !s.check(method, p["blocks"]) {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "msg_blocks_too_long"})
			return
		}
		m := &Message{Channel: p["channel"], TS: s.nextTS(), User: p["user"], Ephemeral: true, Text: p["text"], Blocks: readable([]byte(p["blocks"])), Via: method}
		s.messages = append(s.messages, m)
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "message_ts": m.TS})
	case "views.open":
		s.openView(w, p)
	case "usergroups.users.list":
		members, ok := s.groups[p["usergroup"]]
		if !ok {
			writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "no_such_subteam"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "users": members})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "error": "unknown_method"})
	}
}

// hook serves response_url posts: an in-channel or ephemeral reply, or a
// replacement of the message the interaction came from. As at Slack, the
// URL is its own credential: its path holds a random part.
func (s *Server) hook(w http.ResponseWriter, r *http.Request) {
	p := params(w, r)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notify()
	h, ok := s.hooks[r.URL.Path]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "error": "expired_url"})
		return
	}
	if !s.check("response_url", p["blocks"]) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": "msg_blocks_too_long"})
		return
	}
	m := Message{Channel: h.channel, Text: p["text"], Blocks: readable([]byte(p["blocks"])), Via: "response_url", ThreadTS: p["thread_ts"]}
	if p["replace_original"] != "true" || h.messageTS == "" {
		s.answer(m, h.user, p["response_type"])
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
		return
	}
	for _, orig := range s.messages {
		if orig.Channel == h.channel && orig.TS == h.messageTS {
			orig.Text, orig.Blocks = m.Text, m.Blocks
			orig.Updates++
			orig.Versions = append(orig.Versions, orig.Blocks)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

// answer posts the reply to a command or a click, as Slack shows it: in the
// channel for response_type in_channel, else (Slack's default) to the user
// alone. Call with s.mu held.
func (s *Server) answer(m Message, user, responseType string) {
	m.TS = s.nextTS()
	if responseType == "in_channel" {
		m.Versions = []json.RawMessage{m.Blocks}
	} else {
		m.User, m.Ephemeral = user, true
	}
	s.messages = append(s.messages, &m)
}
