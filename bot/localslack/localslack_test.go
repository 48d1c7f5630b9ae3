package localslack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/bot/localslack"
)

func start(t *testing.T) *localslack.Server {
	t.Helper()
	s, err := localslack.Start(localslack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// open asks for a Socket Mode URL as slack-go does, with the app token.
func open(t *testing.T, s *localslack.Server, appToken string) (string, error) {
	t.Helper()
	api := slack.New(s.BotToken(), slack.OptionAppLevelToken(appToken), slack.OptionAPIURL(s.APIURL()))
	sm, _, err := api.StartSocketModeContext(t.Context())
	if err != nil {
		return "", err
	}
	return sm.URL, nil
}

// dial opens a Socket Mode connection as slack-go does (its Origin too)
// and reads the hello.
func dial(t *testing.T, s *localslack.Server) *websocket.Conn {
	t.Helper()
	url, err := open(t, s, s.AppToken())
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"https://api.slack.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var hello struct{ Type string }
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("hello = %+v, %v", hello, err)
	}
	return conn
}

// envelope reads the next envelope off conn.
func envelope(t *testing.T, conn *websocket.Conn) (id string, payload json.RawMessage) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var env struct {
		EnvelopeID string          `json:"envelope_id"`
		Payload    json.RawMessage `json:"payload"`
	}
	if err := conn.ReadJSON(&env); err != nil {
		t.Fatal(err)
	}
	return env.EnvelopeID, env.Payload
}

func ack(t *testing.T, s *localslack.Server, conn *websocket.Conn, id string, payload any) {
	t.Helper()
	if err := conn.WriteJSON(map[string]any{"envelope_id": id, "payload": payload}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.AwaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// Each Slack has tokens of its own, in Slack's forms; another's are
// refused.
func TestTokensPerRun(t *testing.T) {
	a, b := start(t), start(t)
	if !strings.HasPrefix(a.AppToken(), "xapp-") || !strings.HasPrefix(a.BotToken(), "xoxb-") || len(a.BotToken()) < 25 {
		t.Errorf("tokens %q and %q are not Slack's forms or too short to be secret", a.AppToken(), a.BotToken())
	}
	if a.AppToken() == b.AppToken() || a.BotToken() == b.BotToken() {
		t.Fatal("two runs share a token")
	}
	_, err := slack.New(b.BotToken(), slack.OptionAPIURL(a.APIURL())).AuthTestContext(t.Context())
	if err == nil || err.Error() != "invalid_auth" {
		t.Errorf("auth.test with another run's bot token: %v, want invalid_auth", err)
	}
	if _, err := open(t, a, b.AppToken()); err == nil || !strings.Contains(err.Error(), "invalid_auth") {
		t.Errorf("apps.connections.open with another run's app token: %v, want invalid_auth", err)
	}
	if _, err := open(t, a, a.BotToken()); err == nil {
		t.Error("the bot token opened a Socket Mode connection")
	}
}

// A Socket Mode URL opens one connection: a page that saw it later (a
// log, a referrer) cannot take over the socket with it.
func TestTicketOnce(t *testing.T) {
	s := start(t)
	url, err := open(t, s, s.AppToken())
	if err != nil {
		t.Fatal(err)
	}
	first, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	again, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil {
		again.Close()
		t.Fatal("a used ticket opened a second connection")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("refused with %v, want 403", err)
	}
	// The server counts a connection once its handler has taken it: wait
	// for that, with a deadline.
	for deadline := time.Now().Add(10 * time.Second); s.Connections() < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections opened, want 1", n)
	}
}

// A slash command's ack may carry the answer its user sees: Slack shows it
// to them alone unless it says in_channel; a bare ack shows nothing.
func TestAckAnswer(t *testing.T) {
	s := start(t)
	conn := dial(t, s)
	section := []any{map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*help* <&>"}}}
	for _, tc := range []struct {
		name      string
		payload   any
		shown     bool
		ephemeral bool
	}{
		{"ephemeral", map[string]any{"response_type": "ephemeral", "text": "help", "blocks": section}, true, true},
		{"default_ephemeral", map[string]any{"text": "help"}, true, true},
		{"in_channel", map[string]any{"response_type": "in_channel", "text": "listing", "blocks": section}, true, false},
		{"bare", nil, false, false},
		{"nothing_to_show", map[string]any{"response_type": "ephemeral"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			channel := "C" + strings.ToUpper(tc.name)
			if _, err := s.Command("/pgkill", "U1", channel, "help"); err != nil {
				t.Fatal(err)
			}
			id, _ := envelope(t, conn)
			ack(t, s, conn, id, tc.payload)
			ms := s.Messages(func(m localslack.Message) bool { return m.Channel == channel })
			if !tc.shown {
				if len(ms) != 0 {
					t.Errorf("shown: %+v", ms)
				}
				return
			}
			if len(ms) != 1 {
				t.Fatalf("%d messages, want 1", len(ms))
			}
			m := ms[0]
			if m.Ephemeral != tc.ephemeral || tc.ephemeral && m.User != "U1" || m.Via != "ack" || m.TS == "" {
				t.Errorf("message %+v: ephemeral %v (to U1) from the ack, want ephemeral %v", m, m.Ephemeral, tc.ephemeral)
			}
			if tc.ephemeral && len(s.Ephemerals(channel, "U2")) != 0 {
				t.Error("someone else sees the answer")
			}
		})
	}
	if v := s.Violations(); len(v) != 0 {
		t.Errorf("violations: %q", v)
	}
}

// A click's payload names, as Slack's does, the message the button is on:
// its channel, its ts, and its thread when it is in one. pgkill takes a
// click on Approve as authority only from the request's own card.
func TestClickContainer(t *testing.T) {
	s := start(t)
	conn := dial(t, s)
	api := slack.New(s.BotToken(), slack.OptionAPIURL(s.APIURL()))
	button := slack.NewActionBlock("decide", slack.NewButtonBlockElement("pgkill_approve", "R1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)))
	_, parent, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("listing", false))
	if err != nil {
		t.Fatal(err)
	}
	_, cardTS, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionTS(parent), slack.MsgOptionBlocks(button))
	if err != nil {
		t.Fatal(err)
	}
	card, ok := s.Message("C1", cardTS)
	if !ok {
		t.Fatal("the card was not posted")
	}
	if _, err := s.Press("U1", card, "pgkill_approve", "R1"); err != nil {
		t.Fatal(err)
	}
	_, payload := envelope(t, conn)
	var cb slack.InteractionCallback
	if err := json.Unmarshal(payload, &cb); err != nil {
		t.Fatal(err)
	}
	c := cb.Container
	if c.Type != "message" || c.ChannelID != "C1" || c.MessageTs != cardTS || c.ThreadTs != parent || cb.Channel.ID != "C1" {
		t.Errorf("container %+v, channel %q; want message %s in C1, thread %s", c, cb.Channel.ID, cardTS, parent)
	}
	if len(cb.ActionCallback.BlockActions) != 1 || cb.ActionCallback.BlockActions[0].Value != "R1" || cb.ResponseURL == "" {
		t.Errorf("actions %+v, response_url %q", cb.ActionCallback.BlockActions, cb.ResponseURL)
	}
	if _, err := s.Press("U1", card, "pgkill_deny", ""); err == nil {
		t.Error("pressed a button the card does not have")
	}
}

// A response_url is its own credential: a guessed one answers nothing.
func TestResponseURLSecret(t *testing.T) {
	s := start(t)
	conn := dial(t, s)
	if _, err := s.Command("/pgkill", "U1", "C1", ""); err != nil {
		t.Fatal(err)
	}
	_, payload := envelope(t, conn)
	var cmd slack.SlashCommand
	if err := json.Unmarshal(payload, &cmd); err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(cmd.ResponseURL, "/")
	if i < 0 || len(cmd.ResponseURL)-i < 20 {
		t.Fatalf("response_url %q has no secret part", cmd.ResponseURL)
	}
	post := func(url string) int {
		resp, err := http.Post(url, "application/json", bytes.NewReader([]byte(`{"text":"hi","response_type":"in_channel"}`)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(cmd.ResponseURL[:i+1] + strings.Repeat("A", len(cmd.ResponseURL)-i-1)); code != http.StatusNotFound {
		t.Errorf("a guessed response_url answered %d, want 404", code)
	}
	if code := post(cmd.ResponseURL); code != http.StatusOK {
		t.Errorf("the real response_url answered %d", code)
	}
	if n := len(s.Messages(nil)); n != 1 {
		t.Errorf("%d messages, want the real reply only", n)
	}
}
