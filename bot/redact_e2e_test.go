package bot_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// stateSecrets are planted in the sessions of TestRedactedInEveryState, in
// the forms a generic SQL lexer reads otherwise than PostgreSQL does.
var stateSecrets = []string{
	"sk_live_e2e_comment", "sk_live_e2e_glued", "sk_live_e2e_tag", "sk_live_e2e_escape", "sk_live_e2e_cont",
	"4111111111111111", "sk_live_e2e_setvalue", "sk_live_e2e_raise", "sk_live_e2e_dot", "sk_live_e2e_hash",
	"sk_live_e2e_reason_form",
}

const (
	// stateRunning waits on an advisory lock the test holds: still running
	// however slow the machine.
	stateRunning = `SELECT /* api_key=sk_live_e2e_comment */ pg_advisory_lock(4250),
  '{"k":1}'::jsonb?$$sk_live_e2e_glued$$ AS glued, $ä$sk_live_e2e_tag$ä$ AS tag,
  E'\'sk_live_e2e_escape' AS esc, 'a' -- a note
  'sk_live_e2e_cont' AS cont, 4111111111111111 AS pan`
	// stateOpen is the last statement of an open transaction: a setting's
	// value, which the grammar takes as a word.
	stateOpen = `SET LOCAL app.token TO sk_live_e2e_setvalue`
	// stateAborted fails, leaving its transaction aborted: a DO block, shown
	// with its body redacted.
	stateAborted = `DO $$BEGIN RAISE EXCEPTION 'sk_live_e2e_raise'; END $$`
	// stateFailed is not even valid SQL; its text stays all the same.
	stateFailed = `SELECT t.$$sk_live_e2e_dot$$, a#$$sk_live_e2e_hash$$ FROM`
)

// With the default PGKILL_REDACT no planted secret reaches Slack or a log
// line, from sessions in every state whose text pgkill shows: running
// (active), open (idle in transaction) and aborted (idle in transaction
// (aborted)), the aborted ones by a failed DO block and by a syntax error.
// Every message kind goes by: the listing, alerts, the approval card, the
// reason form, the outcome, the audit channel. Not parallel: the alert
// watcher sees every session of the shared server.
func TestRedactedInEveryState(t *testing.T) {
	e := start(t, withAlerts, func(c *config.Config, _ *[]pg.TargetSpec) {
		c.AuditChannel, c.Reason = "C0AUDIT", "required"
		c.IdleTxAlertAfter = 400 * time.Millisecond
	})
	holder := pgtest.NewSession(t, e.dsn, "e2e_states_holder")
	holder.Exec(t, "SELECT pg_advisory_lock(4250)")
	running := e.victim(t, "e2e_states_running", stateRunning)
	open := pgtest.NewSession(t, e.dsn, "e2e_states_open")
	open.Exec(t, "BEGIN")
	open.Exec(t, stateOpen)
	aborted := inAbortedTx(t, e.dsn, "e2e_states_aborted", stateAborted)
	inAbortedTx(t, e.dsn, "e2e_states_failed", stateFailed)

	listing := e.list(t, requester, "main 0s app=e2e_states_*")
	for _, want := range []string{
		"pg_advisory_lock(?)", "::jsonb??", "SET LOCAL app.token TO ?",
		"DO $$BEGIN RAISE EXCEPTION ?; END $$", "SELECT t.?, a#? FROM",
	} {
		if !strings.Contains(string(listing.Blocks), want) {
			t.Errorf("listing lacks %q: %s", want, listing.Blocks)
		}
	}
	e.waitAlert(t, 20*time.Second, "the running query's alert", "pg_advisory_lock(?)")
	e.waitAlert(t, 20*time.Second, "the open transaction's alert", "SET LOCAL app.token TO")

	// Cancel the running query and terminate the aborted one, each through
	// the reason form; the first reason given is refused (too short), which
	// is answered in the form.
	var acks []string
	for _, c := range []struct {
		v       *pgtest.Session
		action  string
		verb    string
		outcome string
		shows   string
	}{
		{running, blocks.ActionCancel, "CANCEL", "The query ended", "pg_advisory_lock(?)"},
		{aborted, blocks.ActionTerminate, "TERMINATE", "The session ended", "RAISE EXCEPTION ?"},
	} {
		before := len(e.slack.Modals(requester))
		e.slack.WaitAck(t, e.slack.Click(t, requester, listing, c.action, pidValue(c.v)))
		var form fakeslack.Modal
		e.slack.Eventually(t, 20*time.Second, "the reason form", func() bool {
			ms := e.slack.Modals(requester)
			if len(ms) > before {
				form = ms[len(ms)-1]
			}
			return len(ms) > before
		})
		if !strings.Contains(string(form.View), c.shows) {
			t.Errorf("the reason form lacks %q: %s", c.shows, form.View)
		}
		for _, reason := range []string{".", "INC-7: runaway worker holds locks"} {
			acks = append(acks, string(e.slack.WaitAck(t, e.slack.Submit(t, form, reasonValues(reason))).Payload))
		}
		card := e.card(t, listing.TS, "the card", has("asks to *"+c.verb+"*"))
		e.slack.WaitAck(t, e.slack.Click(t, approver, card, blocks.ActionApprove, ""))
		out := e.card(t, listing.TS, "the outcome", has(c.outcome))
		for _, m := range []fakeslack.Message{card, out} {
			if !strings.Contains(string(m.Blocks), c.shows) {
				t.Errorf("card lacks %q: %s", c.shows, m.Blocks)
			}
		}
	}
	if code := pgtest.SQLState(running.Result(t)); code != "57014" {
		t.Errorf("running session SQLSTATE %q, want 57014", code)
	}
	e.slack.Eventually(t, 10*time.Second, "six lines in the audit channel", func() bool {
		return len(e.slack.Messages(func(m fakeslack.Message) bool { return m.Channel == "C0AUDIT" })) >= 6
	})

	shown := e.shown(stateSecrets, acks...)
	for _, secret := range shown {
		t.Errorf("%q reached Slack or the logs", secret)
	}
}

// inAbortedTx opens a session as app, begins a transaction and runs sql in
// it, which must fail: the session is left idle in transaction (aborted),
// its failed statement's text in pg_stat_activity.
func inAbortedTx(t *testing.T, dsn, app, sql string) *pgtest.Session {
	t.Helper()
	s := pgtest.NewSession(t, dsn, app)
	s.Exec(t, "BEGIN")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Conn.Exec(ctx, sql); err == nil {
		t.Fatalf("%s succeeded, want an error", sql)
	}
	var state string
	admin := pgtest.NewSession(t, dsn, app+"_check")
	if err := admin.Conn.QueryRow(ctx, "SELECT state FROM pg_stat_activity WHERE pid = $1", s.PID).Scan(&state); err != nil || state != string(pg.StateIdleInTxAborted) {
		t.Fatalf("%s is %q (%v), want %s", app, state, err, pg.StateIdleInTxAborted)
	}
	return s
}

// shown returns the secrets found in any message the fake Slack holds
// (every version), any Web API call's parameters (a modal's view among
// them), any modal, the extra texts given (acks), or the logs.
func (e *env) shown(secrets []string, extra ...string) []string {
	seen := extra
	for _, m := range e.slack.Messages(nil) {
		seen = append(seen, m.Text, string(m.Blocks))
		for _, v := range m.Versions {
			seen = append(seen, string(v))
		}
	}
	for _, c := range e.slack.Calls("") {
		for _, p := range c.Params {
			seen = append(seen, p)
		}
	}
	for _, m := range e.slack.Modals("") {
		seen = append(seen, string(m.View))
	}
	seen = append(seen, e.logs.String())
	var found []string
	for _, secret := range secrets {
		for _, s := range seen {
			if strings.Contains(s, secret) {
				found = append(found, secret)
				break
			}
		}
	}
	return found
}
