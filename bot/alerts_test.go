package bot_test

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// The alert tests are not parallel: the watcher sees every session of the
// shared server, so no other test may run sessions meanwhile.

const alertChannel = "C0ALERTS"

func withAlerts(c *config.Config, _ *[]pg.TargetSpec) {
	c.AlertChannel = alertChannel
	c.AlertAfter = 400 * time.Millisecond
	c.IdleTxAlertAfter = 0
	c.PollInterval = 200 * time.Millisecond
	c.AlertEditEvery = 300 * time.Millisecond
	c.AlertMaxPerPoll = 5
	c.AlertIgnoreApps = "pg_dump,backup-*"
}

func (e *env) alerts(contains string) []fakeslack.Message {
	return e.slack.Messages(func(m fakeslack.Message) bool {
		return m.Channel == alertChannel && m.ThreadTS == "" && strings.Contains(string(m.Versions[0]), contains)
	})
}

// waitPolls waits until the watcher has polled n more times.
func (e *env) waitPolls(t *testing.T, n int) {
	t.Helper()
	base := len(e.logs.records("polled"))
	e.slack.Eventually(t, 20*time.Second, fmt.Sprintf("%d polls", n), func() bool { return len(e.logs.records("polled")) >= base+n })
}

func (e *env) waitAlert(t *testing.T, within time.Duration, what, contains string) fakeslack.Message {
	t.Helper()
	var m fakeslack.Message
	e.slack.Eventually(t, within, what, func() bool {
		ms := e.alerts(contains)
		if len(ms) == 1 {
			m = ms[0]
		}
		return len(ms) >= 1
	})
	return m
}

func TestAlertLifecycleAndCancelFromAlert(t *testing.T) {
	// A target that accepts connections and never answers: it must not delay
	// the healthy one's alerts.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	e := start(t, withAlerts, func(_ *config.Config, specs *[]pg.TargetSpec) {
		*specs = append(*specs, pg.TargetSpec{Name: "hanging", DSN: "postgres://u@" + hang.Addr().String() + "/x?sslmode=disable"})
	})
	v := e.victim(t, "alert_victim", "SELECT pg_sleep(60)")
	pid := fmt.Sprintf("*pid %d*", v.PID)
	// Within two polls of crossing the threshold (plus posting).
	within := e.cfg.AlertAfter + 2*e.cfg.PollInterval + 4*time.Second
	m := e.waitAlert(t, within, "the alert", pid)
	if !strings.Contains(string(m.Blocks), "Runaway query") || !strings.Contains(string(m.Blocks), blocks.ActionCancel) {
		t.Errorf("alert: %s", m.Blocks)
	}
	e.waitAlert(t, 15*time.Second, "the hanging target's down alert", "*hanging cannot be polled*")

	// Many polls and a reconnect later: still one alert, edited in place.
	e.waitPolls(t, 5)
	e.slack.Disconnect(t, "refresh_requested")
	e.slack.Eventually(t, 15*time.Second, "reconnect", func() bool { return e.slack.Connections() >= 2 && e.slack.Connected() })
	e.waitPolls(t, 5)
	if n := len(e.alerts(pid)); n != 1 {
		t.Fatalf("%d alerts for one query", n)
	}
	m, _ = e.slack.Message(alertChannel, m.TS)
	if m.Updates == 0 {
		t.Error("alert never edited in place")
	}

	// Cancel from the alert goes through approval, in the alert's thread.
	e.slack.Click(t, requester, m, blocks.ActionCancel, pidValue(v))
	card := e.card(t, m.TS, "the approval card", has("asks to *CANCEL*"))
	if !v.Running() {
		t.Fatal("signalled before approval")
	}
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q", code)
	}
	e.slack.Eventually(t, 15*time.Second, "the alert resolved", func() bool {
		m, _ = e.slack.Message(alertChannel, m.TS)
		return strings.Contains(string(m.Blocks), "Resolved")
	})
	b := string(m.Blocks)
	if !strings.Contains(b, "cancelled through request R1") || !strings.Contains(b, "<@U0APPROVER>") || strings.Contains(b, blocks.ActionCancel) {
		t.Errorf("resolved alert: %s", b)
	}
}

func TestAlertResolvesByItselfAndIgnoresApps(t *testing.T) {
	e := start(t, withAlerts)
	ignored := e.victim(t, "pg_dump", "SELECT pg_sleep(60)")
	ignored2 := e.victim(t, "backup-nightly", "SELECT pg_sleep(60)")
	v := e.victim(t, "alert_short", "SELECT pg_sleep(2)")
	m := e.waitAlert(t, 10*time.Second, "the alert", fmt.Sprintf("*pid %d*", v.PID))
	if err := v.Result(t); err != nil {
		t.Fatal(err)
	}
	e.slack.Eventually(t, 15*time.Second, "the alert resolved", func() bool {
		m, _ = e.slack.Message(alertChannel, m.TS)
		return strings.Contains(string(m.Blocks), "finished by itself")
	})
	e.waitPolls(t, 3)
	for _, s := range []*pgtest.Session{ignored, ignored2} {
		if n := len(e.alerts(fmt.Sprintf("*pid %d*", s.PID))); n != 0 {
			t.Errorf("ignored application alerted (%d)", n)
		}
	}
}

func TestAlertFloodSummary(t *testing.T) {
	dsn := pgtest.DSN(t)
	var victims []*pgtest.Session
	for range 7 {
		s := pgtest.NewSession(t, dsn, "flood")
		s.Run("SELECT pg_sleep(60)")
		victims = append(victims, s)
	}
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "main", DSN: dsn}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	// All past the threshold before the first poll: one poll finds all seven.
	deadline := time.Now().Add(10 * time.Second)
	for {
		bs, err := tg.List(t.Context(), pg.Filter{Application: "flood", MinDuration: 500 * time.Millisecond})
		if err == nil && len(bs.Backends) == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("victims not running: %v %v", bs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e := start(t, withAlerts)
	m := e.waitAlert(t, 10*time.Second, "the summary", "7 runaway queries at once")
	e.waitPolls(t, 5)
	if all := e.slack.Messages(func(m fakeslack.Message) bool { return m.Channel == alertChannel }); len(all) != 1 {
		t.Errorf("%d messages in the alert channel, want 1 summary", len(all))
	}
	if n := strings.Count(string(m.Blocks), blocks.ActionTerminate); n != 3 {
		t.Errorf("summary offers %d backends, want the 3 longest", n)
	}
	if !strings.Contains(string(m.Blocks), "`flood` ×7") {
		t.Errorf("summary counts: %s", m.Blocks)
	}
	for _, v := range victims {
		pgtest.Exec(t, "SELECT pg_cancel_backend($1)", v.PID)
		v.Result(t)
	}
	e.slack.Eventually(t, 15*time.Second, "the summary resolved", func() bool {
		m, _ = e.slack.Message(alertChannel, m.TS)
		return strings.Contains(string(m.Blocks), "all 7 runaway queries")
	})
}

func TestAlertTargetDownAndUp(t *testing.T) {
	dsn := pgtest.DSN(t)
	host := strings.TrimPrefix(dsn, "postgres://postgres@")
	host = host[:strings.Index(host, "/")]
	px := pgtest.NewProxy(t, host)
	e := start(t, withAlerts, func(_ *config.Config, specs *[]pg.TargetSpec) {
		*specs = append(*specs, pg.TargetSpec{Name: "flaky", DSN: "postgres://postgres@" + px.Addr() + "/postgres?sslmode=disable"})
	})
	e.waitPolls(t, 4)
	px.Partition(true)
	e.waitAlert(t, 15*time.Second, "the down alert", "flaky cannot be polled")
	e.waitPolls(t, 6)
	px.Partition(false)
	e.waitAlert(t, 15*time.Second, "the up alert", "flaky answers again")
	e.waitPolls(t, 4)
	if d, u := len(e.alerts("*flaky cannot be polled*")), len(e.alerts("*flaky answers again*")); d != 1 || u != 1 {
		for _, m := range e.alerts("") {
			t.Logf("%s", m.Versions[0])
		}
		t.Errorf("%d down and %d up alerts, want one each", d, u)
	}
	if n := len(e.alerts("*main cannot be polled*")); n != 0 {
		t.Error("the healthy target was reported down")
	}
}

func TestAlertIdleInTransaction(t *testing.T) {
	e := start(t, withAlerts, func(c *config.Config, _ *[]pg.TargetSpec) { c.IdleTxAlertAfter = 500 * time.Millisecond })
	s := pgtest.NewSession(t, e.dsn, "alert_idle")
	s.Exec(t, "BEGIN; SELECT 1")
	m := e.waitAlert(t, 10*time.Second, "the idle alert", fmt.Sprintf("*pid %d*", s.PID))
	b := string(m.Versions[0])
	if !strings.Contains(b, "Transaction idle too long") || strings.Contains(b, blocks.ActionCancel) || !strings.Contains(b, blocks.ActionTerminate) {
		t.Errorf("idle alert: %s", b)
	}
	s.Exec(t, "COMMIT")
	e.slack.Eventually(t, 15*time.Second, "resolved", func() bool {
		m, _ = e.slack.Message(alertChannel, m.TS)
		return strings.Contains(string(m.Blocks), "Resolved")
	})
}

// With a state store, a restarted pgkill does not alert again about a query
// it already alerted about, and still resolves that alert.
func TestAlertStateSurvivesRestart(t *testing.T) {
	fake := fakeslack.New(t)
	opts := []option{withAlerts, func(c *config.Config, _ *[]pg.TargetSpec) { c.StateDSN = pgtest.Database(t, "state_alerts") }}
	first, stop := startOn(t, fake, opts...)
	v := first.victim(t, "alert_restart", "SELECT pg_sleep(60)")
	pid := fmt.Sprintf("*pid %d*", v.PID)
	m := first.waitAlert(t, 10*time.Second, "the alert", pid)
	stop()

	second, _ := startOn(t, fake, opts...)
	second.waitPolls(t, 5)
	if n := len(second.alerts(pid)); n != 1 {
		t.Fatalf("%d alerts for one query across a restart", n)
	}
	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", v.PID)
	v.Result(t)
	fake.Eventually(t, 15*time.Second, "the alert resolved by the new process", func() bool {
		m, _ = fake.Message(alertChannel, m.TS)
		return strings.Contains(string(m.Blocks), "Resolved")
	})
}

// An alert whose post fails (HTTP 500) is posted again, with backoff, and
// recorded as posted (its ts, in the state store too) only once Slack has
// it.
func TestAlertPostRetriedAfterServerError(t *testing.T) {
	stateDSN := pgtest.Database(t, "state_alert_retry")
	fake := fakeslack.New(t)
	fake.Fail("chat.postMessage", 2)
	e, _ := startOn(t, fake, withAlerts, func(c *config.Config, _ *[]pg.TargetSpec) { c.StateDSN = stateDSN })
	v := e.victim(t, "alert_retry", "SELECT pg_sleep(60)")
	m := e.waitAlert(t, 30*time.Second, "the alert, after two failed posts", fmt.Sprintf("*pid %d*", v.PID))
	if n := len(fake.Calls("chat.postMessage")); n < 3 {
		t.Errorf("%d posts, want the two that failed and one more", n)
	}
	store, err := pg.OpenStore(t.Context(), stateDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	fake.Eventually(t, 15*time.Second, "the alert's ts in the state store", func() bool {
		docs, err := store.Alerts(t.Context(), "main")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			var doc struct{ TS string }
			if json.Unmarshal(d, &doc) == nil && doc.TS == m.TS {
				return true
			}
		}
		return false
	})
	e.waitPolls(t, 5)
	if n := len(e.alerts(fmt.Sprintf("*pid %d*", v.PID))); n != 1 {
		t.Errorf("%d alerts for one query", n)
	}
}

// A hung Slack (chat.postMessage and chat.update never answer) does not
// stop the polls; the alert goes out once Slack answers again.
func TestAlertPollsContinueWhileSlackHangs(t *testing.T) {
	fake := fakeslack.New(t)
	releasePost, releaseUpdate := fake.Stall("chat.postMessage"), fake.Stall("chat.update")
	defer releasePost()
	defer releaseUpdate()
	e, _ := startOn(t, fake, withAlerts)
	v := e.victim(t, "alert_hung_slack", "SELECT pg_sleep(60)")
	fake.Eventually(t, 15*time.Second, "the alert's post to hang", func() bool { return fake.Stalled("chat.postMessage") > 0 })
	e.waitPolls(t, 10) // 2 s of polls at the configured rate; the helper allows 20 s
	releasePost()
	releaseUpdate()
	e.waitAlert(t, 30*time.Second, "the alert once Slack answers", fmt.Sprintf("*pid %d*", v.PID))
}

// Shutdown does not wait on a hung Slack: alerts queued get a bounded
// drain, and Serve returns (the helper fails the test if it does not
// within 30 s).
func TestAlertShutdownWhileSlackHangs(t *testing.T) {
	fake := fakeslack.New(t)
	release := fake.Stall("chat.postMessage")
	defer release()
	e, stop := startOn(t, fake, withAlerts)
	e.victim(t, "alert_hung_shutdown", "SELECT pg_sleep(60)")
	fake.Eventually(t, 15*time.Second, "the alert's post to hang", func() bool { return fake.Stalled("chat.postMessage") > 0 })
	stop()
	if len(e.logs.records("pgkill stopped")) != 1 {
		t.Error("Serve did not stop")
	}
	if len(e.logs.records("slack messages not sent before shutdown")) != 1 {
		t.Error("the alert left unsent is not logged")
	}
}

// An alert claimed in the state store but never posted (Slack hung until
// that process stopped) is posted by the next run.
func TestAlertUnpostedIsPostedAfterRestart(t *testing.T) {
	fake := fakeslack.New(t)
	opts := []option{withAlerts, func(c *config.Config, _ *[]pg.TargetSpec) { c.StateDSN = pgtest.Database(t, "state_alert_unposted") }}
	release := fake.Stall("chat.postMessage")
	first, stop := startOn(t, fake, opts...)
	v := first.victim(t, "alert_unposted", "SELECT pg_sleep(60)")
	fake.Eventually(t, 15*time.Second, "the alert's post to hang", func() bool { return fake.Stalled("chat.postMessage") > 0 })
	stop()
	// The fake has seen the stalled post given up, so releasing the stall
	// cannot post it after all.
	fake.Eventually(t, 15*time.Second, "the hung post given up", func() bool {
		for _, c := range fake.Calls("chat.postMessage") {
			if c.Status == 499 {
				return true
			}
		}
		return false
	})
	release()
	if n := len(first.alerts("")); n != 0 {
		t.Fatalf("%d alerts posted while Slack hung", n)
	}
	second, _ := startOn(t, fake, opts...)
	second.waitAlert(t, 20*time.Second, "the alert, posted by the next run", fmt.Sprintf("*pid %d*", v.PID))
	second.waitPolls(t, 5)
	if n := len(second.alerts(fmt.Sprintf("*pid %d*", v.PID))); n != 1 {
		t.Errorf("%d alerts for one query", n)
	}
}
