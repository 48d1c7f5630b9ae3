package fakeslack_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/bot/fakeslack"
)

// dial opens a Socket Mode connection as slack-go does and returns it with
// its hello's num_connections.
func dial(t *testing.T, s *fakeslack.Server) (*websocket.Conn, int) {
	t.Helper()
	api := slack.New(fakeslack.BotToken, slack.OptionAppLevelToken(fakeslack.AppToken), slack.OptionAPIURL(s.APIURL()))
	sm, _, err := api.StartSocketModeContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn, _, err := websocket.DefaultDialer.Dial(sm.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var hello struct {
		Type           string `json:"type"`
		NumConnections int    `json:"num_connections"`
	}
	if err := conn.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("hello = %+v, %v", hello, err)
	}
	return conn, hello.NumConnections
}

// Several connections of one app: hello counts them, and each envelope goes
// to exactly one of them, in turn.
func TestSeveralConnectionsRoundRobin(t *testing.T) {
	s := fakeslack.New(t)
	s.AllowConnections(3)
	var conns []*websocket.Conn
	for i := range 3 {
		c, n := dial(t, s)
		if n != i+1 {
			t.Errorf("hello %d: num_connections = %d", i, n)
		}
		conns = append(conns, c)
	}
	got := map[int][]string{}
	for range 6 {
		id := s.SlashCommand(t, "/pgkill", "U1", "C1", "help")
		got[s.Delivered(id)] = append(got[s.Delivered(id)], id)
	}
	for i, c := range conns {
		ids := got[i+1]
		if len(ids) != 2 {
			t.Errorf("connection %d got %v, want 2 envelopes", i+1, ids)
			continue
		}
		for _, want := range ids {
			var env struct {
				EnvelopeID string `json:"envelope_id"`
			}
			if err := c.ReadJSON(&env); err != nil || env.EnvelopeID != want {
				t.Errorf("connection %d read %q, %v; want %s", i+1, env.EnvelopeID, err, want)
			}
		}
	}
}

// By default one connection: a new one replaces the old, as when one
// slack-go client reconnects.
func TestOneConnectionReplaced(t *testing.T) {
	s := fakeslack.New(t)
	old, _ := dial(t, s)
	_, n := dial(t, s)
	if n != 1 {
		t.Errorf("num_connections = %d, want 1", n)
	}
	var v any
	if err := old.ReadJSON(&v); err == nil || !strings.Contains(err.Error(), "close") && !strings.Contains(err.Error(), "EOF") {
		t.Errorf("the replaced connection still reads: %v %v", v, err)
	}
	s.Eventually(t, 5*time.Second, "one live connection", func() bool { return s.Live() == 1 })
}
