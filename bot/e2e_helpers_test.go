package bot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const (
	channel   = "C0INCIDENT"
	requester = "U0REQ"
	approver  = "U0APPROVER"
	groupie   = "U0GROUPIE" // an approver through the user group S0DBA
	stranger  = "U0STRANGER"
)

// syncBuffer collects the bot's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the JSON log records with msg.
func (b *syncBuffer) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(b.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// env is a running bot against the fake Slack and the real PostgreSQL.
type env struct {
	slack *fakeslack.Server
	cfg   config.Config
	logs  *syncBuffer
	dsn   string
}

type option func(*config.Config, *[]pg.TargetSpec)

// start runs bot.Serve in-process until the test ends, and waits until it
// is connected.
func start(t testing.TB, opts ...option) *env {
	t.Helper()
	e, _ := startOn(t, fakeslack.New(t), opts...)
	return e
}

// startOn runs a bot against an existing fake Slack; stop ends it early (a
// restart), otherwise it ends with the test.
func startOn(t testing.TB, fake *fakeslack.Server, opts ...option) (*env, func()) {
	t.Helper()
	e := &env{slack: fake, logs: &syncBuffer{}, dsn: pgtest.DSN(t)}
	e.slack.SetGroup("S0DBA", groupie)
	e.slack.Grant(bot.Scopes...) // exactly what the manifest asks for
	e.cfg = config.Config{
		AppToken: fakeslack.AppToken, BotToken: fakeslack.BotToken, APIURL: e.slack.APIURL(),
		Approvers: []string{approver, "S0DBA"}, ApprovalTTL: time.Minute, Command: "/pgkill",
		MinDuration: time.Minute, VerifyTimeout: 5 * time.Second, ConnectTimeout: 3 * time.Second,
		Protect: "user=rdsadmin", LogFormat: "json", LogLevel: "debug",
		AlertMaxPerPoll: 5, PollInterval: time.Second, AlertAfter: time.Minute,
		Reason: "off", // the reason form has its own tests
	}
	specs := []pg.TargetSpec{{Name: "main", DSN: e.dsn}}
	for _, o := range opts {
		o(&e.cfg, &specs)
	}
	pgOpts, err := e.cfg.PGOptions()
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := pg.NewFleet(specs, pgOpts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var store bot.Store
	if e.cfg.StateDSN != "" {
		s, err := pg.OpenStore(ctx, e.cfg.StateDSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		store = s
	}
	go func() { done <- bot.Serve(ctx, e.cfg, fleet, store, e.logs) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Serve did not return after cancel")
			}
			fleet.Close()
		})
	}
	t.Cleanup(func() {
		if t.Failed() && testing.Verbose() {
			t.Logf("logs:\n%s", e.logs.String())
			for _, m := range e.slack.Messages(nil) {
				t.Logf("message %s channel=%s thread=%s eph=%v user=%s updates=%d text=%q", m.TS, m.Channel, m.ThreadTS, m.Ephemeral, m.User, m.Updates, m.Text)
			}
		}
		stop()
		for _, v := range e.slack.Violations() {
			t.Errorf("fake Slack saw: %s", v)
		}
		logs := e.logs.String()
		for _, secret := range []string{fakeslack.AppToken, fakeslack.BotToken} {
			if strings.Contains(logs, secret) {
				t.Error("a token appears in the logs")
			}
		}
	})
	e.slack.Eventually(t, 15*time.Second, "the bot to connect", func() bool {
		return e.slack.Connected() && len(e.logs.records("connected to Slack")) > 0
	})
	return e, stop
}

// victim starts a session running sql as application app and waits until
// the database shows it running.
func (e *env) victim(t *testing.T, app, sql string) *pgtest.Session {
	t.Helper()
	s := pgtest.NewSession(t, e.dsn, app)
	s.Run(sql)
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "main", DSN: e.dsn}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	e.slack.Eventually(t, 15*time.Second, app+" to run", func() bool {
		b, err := tg.Backend(context.Background(), s.PID)
		return err == nil && b.State == pg.StateActive
	})
	return s
}

// list runs /pgkill as user and returns the listing message it posts.
func (e *env) list(t *testing.T, user, text string) fakeslack.Message {
	t.Helper()
	before := len(e.slack.Messages(nil))
	id := e.slack.SlashCommand(t, "/pgkill", user, channel, text)
	if ack := e.slack.WaitAck(t, id); len(ack.Payload) != 0 && string(ack.Payload) != "null" {
		t.Fatalf("listing acked with a payload: %s", ack.Payload)
	}
	var m fakeslack.Message
	e.slack.Eventually(t, 20*time.Second, "the listing", func() bool {
		ms := e.slack.Messages(func(m fakeslack.Message) bool {
			return m.Channel == channel && !m.Ephemeral && strings.HasPrefix(m.Text, "pgkill: ") && strings.Contains(m.Text, "long-running")
		})
		if len(ms) == 0 || len(e.slack.Messages(nil)) <= before {
			return false
		}
		m = ms[len(ms)-1]
		return true
	})
	return m
}

// card waits for the approval card in the listing's thread that satisfies ok.
func (e *env) card(t *testing.T, thread string, what string, ok func(fakeslack.Message) bool) fakeslack.Message {
	t.Helper()
	var card fakeslack.Message
	e.slack.Eventually(t, 20*time.Second, what, func() bool {
		for _, m := range e.slack.Messages(func(m fakeslack.Message) bool { return m.ThreadTS == thread && !m.Ephemeral }) {
			if ok(m) {
				card = m
				return true
			}
		}
		return false
	})
	return card
}

func has(parts ...string) func(fakeslack.Message) bool {
	return func(m fakeslack.Message) bool {
		for _, p := range parts {
			if !strings.Contains(string(m.Blocks), p) {
				return false
			}
		}
		return true
	}
}

// told waits for an ephemeral answer to user containing text.
func (e *env) told(t *testing.T, user, text string) {
	t.Helper()
	e.slack.Eventually(t, 20*time.Second, "an ephemeral "+text, func() bool {
		for _, m := range e.slack.Ephemerals(channel, user) {
			if strings.Contains(string(m.Blocks), text) || strings.Contains(m.Text, text) {
				return true
			}
		}
		return false
	})
}

// ask runs /pgkill text as user in ch and returns the private answer it
// gets (every answer comes after the policy check, through the
// response_url: the ack itself carries nothing).
func (e *env) ask(t *testing.T, user, ch, text string) fakeslack.Message {
	t.Helper()
	before := len(e.slack.Ephemerals(ch, user))
	id := e.slack.SlashCommand(t, "/pgkill", user, ch, text)
	if ack := e.slack.WaitAck(t, id); len(ack.Payload) != 0 && string(ack.Payload) != "null" {
		t.Errorf("/pgkill %s acked with a payload: %s", text, ack.Payload)
	}
	var m fakeslack.Message
	e.slack.Eventually(t, 20*time.Second, "the answer to /pgkill "+text, func() bool {
		ms := e.slack.Ephemerals(ch, user)
		if len(ms) <= before {
			return false
		}
		m = ms[before]
		return true
	})
	return m
}

func (e *env) audits(event string) []map[string]any {
	var out []map[string]any
	for _, r := range e.logs.records("audit") {
		if r["event"] == event {
			out = append(out, r)
		}
	}
	return out
}

// request presses action (blocks.ActionCancel or ActionTerminate) on v's row
// of the listing as user and returns the approval card it posts.
func (e *env) request(t *testing.T, user string, listing fakeslack.Message, v *pgtest.Session, action string) fakeslack.Message {
	t.Helper()
	verb := map[string]string{blocks.ActionCancel: "CANCEL", blocks.ActionTerminate: "TERMINATE"}[action]
	e.slack.Click(t, user, listing, action, pidValue(v))
	return e.card(t, listing.TS, "the "+strings.ToLower(verb)+" card", has("asks to *"+verb+"*"))
}
