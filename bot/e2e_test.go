package bot_test

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/approval"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func pidValue(s *pgtest.Session) string { return fmt.Sprintf("|%d|", s.PID) }

// list → Cancel → approval card → Approve → the query gets 57014.
func TestCancelThroughApproval(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.AuditChannel = "C0AUDIT" })
	v := e.victim(t, "e2e_cancel", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "main 0s app=e2e_cancel")
	if !strings.Contains(string(listing.Blocks), "pg_sleep(?)") || !strings.Contains(string(listing.Blocks), fmt.Sprintf("*pid %d*", v.PID)) {
		t.Fatalf("listing lacks the victim: %s", listing.Blocks)
	}

	e.slack.WaitAck(t, e.slack.Click(t, requester, listing, blocks.ActionCancel, pidValue(v)))
	card := e.card(t, listing.TS, "the approval card", has("asks to *CANCEL*", blocks.ActionApprove, "<@U0APPROVER>", "<!subteam^S0DBA>"))
	if !v.Running() {
		t.Fatal("the query ended before anyone approved")
	}

	e.slack.WaitAck(t, e.slack.Click(t, approver, card, blocks.ActionApprove, ""))
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q, want 57014", code)
	}
	done := e.card(t, listing.TS, "the outcome", has("The query ended", "approved by <@U0APPROVER>"))
	// Updated in place: the "approved, signalling" update runs beside the
	// signal and may already show the outcome, so one update may be all.
	if strings.Contains(string(done.Blocks), blocks.ActionApprove) || done.Updates < 1 {
		t.Errorf("card not updated in place without buttons: %d updates, %s", done.Updates, done.Blocks)
	}
	for _, ev := range []string{approval.AuditRequest, approval.AuditApprove, approval.AuditOutcome} {
		if n := len(e.audits(ev)); n != 1 {
			t.Errorf("%d audit records %q, want 1", n, ev)
		}
	}
	if r := e.audits(approval.AuditOutcome); len(r) == 1 && (r[0]["result"] != "ended" || r[0]["requester"] != requester || r[0]["actor"] != approver) {
		t.Errorf("outcome record = %v", r[0])
	}
	var lines []string
	e.slack.Eventually(t, 10*time.Second, "three lines in the audit channel", func() bool {
		lines = nil
		for _, m := range e.slack.Messages(func(m fakeslack.Message) bool { return m.Channel == "C0AUDIT" }) {
			lines = append(lines, m.Text)
		}
		return len(lines) == 3
	})
	for i, want := range []string{"R1 request cancel pid", "R1 approve cancel", "R1 outcome cancel"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("audit line %d = %q, want %q", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[2], ": ended") {
		t.Errorf("outcome line = %q", lines[2])
	}
}

func TestTerminateThroughApproval(t *testing.T) {
	t.Parallel()
	e := start(t)
	v := e.victim(t, "e2e_terminate", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_terminate")
	e.slack.WaitAck(t, e.slack.Click(t, requester, listing, blocks.ActionTerminate, pidValue(v)))
	card := e.card(t, listing.TS, "the approval card", has("asks to *TERMINATE*"))
	// An approver by way of the user group S0DBA.
	e.slack.Click(t, groupie, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57P01" {
		t.Errorf("victim SQLSTATE %q, want 57P01", code)
	}
	e.card(t, listing.TS, "the outcome", has("The session ended", "approved by <@U0GROUPIE>"))
}

func TestApprovalRefusals(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.Requesters = []string{requester, approver} })
	v := e.victim(t, "e2e_refuse", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_refuse")

	// Not a requester.
	e.slack.Click(t, stranger, listing, blocks.ActionCancel, pidValue(v))
	e.told(t, stranger, "may ask to cancel or terminate")

	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	// A second click on the same button does not make a second request.
	e.slack.Click(t, requester, listing, blocks.ActionCancel, pidValue(v))
	e.told(t, requester, "already waiting for approval")

	e.slack.Click(t, requester, card, blocks.ActionApprove, "") // not an approver
	e.told(t, requester, "may approve or deny requests on")
	e.slack.Click(t, stranger, card, blocks.ActionApprove, "")
	e.told(t, stranger, "may approve or deny requests on")
	e.slack.Click(t, stranger, card, blocks.ActionDeny, "")
	e.slack.Click(t, stranger, card, blocks.ActionWithdraw, "")
	// Not a requester: the policy refuses the Withdraw, before anything is
	// said about who asked.
	e.slack.Eventually(t, 20*time.Second, "the policy's refusal of the stranger's Withdraw", func() bool {
		n := 0
		for _, m := range e.slack.Ephemerals(channel, stranger) {
			if strings.Contains(m.Text+string(m.Blocks), "may ask to cancel or terminate") {
				n++
			}
		}
		return n == 2 // the Cancel above, and the Withdraw
	})
	for _, m := range e.slack.Ephemerals(channel, stranger) {
		if strings.Contains(m.Text+string(m.Blocks), "who asked") {
			t.Errorf("the stranger was told who asked: %s", m.Text)
		}
	}
	e.slack.Eventually(t, 10*time.Second, "three refusals to the stranger", func() bool { return len(e.slack.Ephemerals(channel, stranger)) >= 4 })

	if !v.Running() || len(e.audits(approval.AuditApprove)) != 0 {
		t.Fatal("something was approved or signalled")
	}
	// An approver asking for something may not approve it too (self-approval off).
	own := e.request(t, approver, listing, v, blocks.ActionTerminate)
	e.slack.Click(t, approver, own, blocks.ActionApprove, "")
	e.told(t, approver, "another approver must approve")

	e.slack.Click(t, requester, card, blocks.ActionWithdraw, "")
	e.card(t, listing.TS, "withdrawn", has("*Withdrawn*"))
	e.slack.Click(t, approver, card, blocks.ActionApprove, "") // a stale copy of the card
	e.told(t, approver, "already withdrawn")
	if !v.Running() {
		t.Error("victim ended")
	}
}

func TestSelfApprovalAllowed(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.SelfApproval = true })
	v := e.victim(t, "e2e_self", "SELECT pg_sleep(60)")
	listing := e.list(t, approver, "0s app=e2e_self")
	card := e.request(t, approver, listing, v, blocks.ActionCancel)
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q, want 57014", code)
	}
}

// Two approvers click at the same moment, and one of them twice: one
// decision, one signal.
func TestConcurrentApprovalsSignalOnce(t *testing.T) {
	t.Parallel()
	e := start(t)
	v := e.victim(t, "e2e_double", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_double")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	var wg sync.WaitGroup
	for _, u := range []string{approver, groupie, approver} {
		wg.Add(1)
		go func() { defer wg.Done(); e.slack.Click(t, u, card, blocks.ActionApprove, "") }()
	}
	wg.Wait()
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q, want 57014", code)
	}
	e.card(t, listing.TS, "the outcome", has("The query ended"))
	e.slack.Eventually(t, 10*time.Second, "two 'already approved' answers", func() bool {
		return len(e.slack.Ephemerals(channel, approver))+len(e.slack.Ephemerals(channel, groupie)) >= 2
	})
	if n, m := len(e.audits(approval.AuditApprove)), len(e.audits(approval.AuditOutcome)); n != 1 || m != 1 {
		t.Errorf("%d approvals and %d outcomes, want 1 and 1", n, m)
	}
}

// The listed query ends and the session starts another before approval:
// the approval signals nothing and the new query runs on.
func TestApprovalAfterIdentityChanged(t *testing.T) {
	t.Parallel()
	e := start(t)
	v := e.victim(t, "e2e_changed", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_changed")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)

	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", v.PID)
	v.Result(t)
	v.Run("SELECT pg_sleep(61)")
	e.slack.Eventually(t, 10*time.Second, "the new query", func() bool {
		bs := e.listNow(t, "e2e_changed")
		return len(bs) == 1 && strings.Contains(bs[0].Query, "61")
	})

	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.card(t, listing.TS, "the outcome", has("Nothing signalled", "no longer running"))
	if !v.Running() {
		t.Errorf("the new query was signalled: %v", v.Result(t))
	}
	// And the old listing's button no longer makes requests.
	e.slack.Click(t, requester, listing, blocks.ActionCancel, pidValue(v))
	e.told(t, requester, "no longer running that query")
}

func TestDeny(t *testing.T) {
	t.Parallel()
	e := start(t)
	v := e.victim(t, "e2e_deny", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_deny")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	e.slack.Click(t, approver, card, blocks.ActionDeny, "")
	denied := e.card(t, listing.TS, "denied", has("*Denied* by <@U0APPROVER>"))
	if strings.Contains(string(denied.Blocks), blocks.ActionApprove) {
		t.Error("denied card still has buttons")
	}
	e.slack.Click(t, groupie, card, blocks.ActionApprove, "") // a stale copy of the card
	e.told(t, groupie, "already denied")
	if !v.Running() || len(e.audits(approval.AuditDeny)) != 1 || len(e.audits(approval.AuditApprove)) != 0 {
		t.Errorf("running=%v, audit: %d deny, %d approve", v.Running(), len(e.audits(approval.AuditDeny)), len(e.audits(approval.AuditApprove)))
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.ApprovalTTL = time.Second })
	v := e.victim(t, "e2e_expire", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_expire")
	e.slack.Click(t, requester, listing, blocks.ActionTerminate, pidValue(v))
	expired := e.card(t, listing.TS, "expiry", has("*Expired*"))
	if strings.Contains(string(expired.Blocks), blocks.ActionApprove) || !strings.Contains(string(expired.Versions[0]), "asks to *TERMINATE*") {
		t.Errorf("card did not go from a request to expired without buttons: %s", expired.Versions)
	}
	e.slack.Click(t, approver, expired.Version(0), blocks.ActionApprove, "") // a stale copy of the card
	e.told(t, approver, "already expired")
	if !v.Running() || len(e.audits(approval.AuditExpire)) != 1 {
		t.Errorf("running=%v, %d expire records", v.Running(), len(e.audits(approval.AuditExpire)))
	}
}

// A cancel that the query swallows: the card says so and offers Terminate,
// which goes through approval again and works.
func TestSwallowedCancelOffersTerminate(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.VerifyTimeout = time.Second })
	v := e.victim(t, "e2e_swallow", `DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(60); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`)
	listing := e.list(t, requester, "0s app=e2e_swallow")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	stuck := e.card(t, listing.TS, "still running", has("still running", blocks.ActionRequestTerminate))
	if !v.Running() {
		t.Fatal("the loop ended")
	}
	e.slack.Click(t, requester, stuck, blocks.ActionRequestTerminate, "")
	term := e.card(t, listing.TS, "the terminate card", has("asks to *TERMINATE*"))
	e.slack.Click(t, approver, term, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57P01" {
		t.Errorf("victim SQLSTATE %q, want 57P01", code)
	}
}

func TestMalformedCommands(t *testing.T) {
	t.Parallel()
	e := start(t)
	tests := map[string]string{
		"nope":                   `unknown target or argument`,
		"limit=-1":               "limit must be",
		"30 minutes":             "not a duration",
		"colour=red":             "unknown key",
		strings.Repeat("x", 800): "at most 500",
		"<@U1> & `x`":            "unknown target",
		"help":                   "lists long-running PostgreSQL queries",
		"targets":                "• *main* · configured (PGKILL_TARGETS)",
	}
	for text, want := range tests {
		m := e.ask(t, requester, channel, text)
		p := m.Text + string(m.Blocks)
		if !strings.Contains(p, want) {
			t.Errorf("%q answered %s; want %q", trunc(text), p, want)
		}
		if !strings.Contains(text, "help") && !strings.Contains(text, "targets") && !strings.Contains(p, "Usage:") {
			t.Errorf("%q: no usage line", trunc(text))
		}
	}
	// doctor answers privately, later.
	e.slack.SlashCommand(t, "/pgkill", requester, channel, "doctor main")
	e.told(t, requester, "pg_read_all_stats")
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func TestReconnects(t *testing.T) {
	t.Parallel()
	e := start(t)
	v := e.victim(t, "e2e_reconnect", "SELECT pg_sleep(60)")
	e.slack.Disconnect(t, "refresh_requested")
	e.slack.Eventually(t, 15*time.Second, "a second connection", func() bool { return e.slack.Connections() >= 2 && e.slack.Connected() })
	e.list(t, requester, "0s app=e2e_reconnect")
	e.slack.DropSocket()
	e.slack.Eventually(t, 15*time.Second, "a third connection", func() bool { return e.slack.Connections() >= 3 && e.slack.Connected() })
	listing := e.list(t, requester, "0s app=e2e_reconnect")
	if _, _, err := fakeslack.FindButton(listing, blocks.ActionCancel, pidValue(v)); err != nil {
		t.Error(err)
	}
}

func TestDeadTargetAmongHealthy(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e := start(t, func(_ *config.Config, specs *[]pg.TargetSpec) {
		*specs = append(*specs, pg.TargetSpec{Name: "dead", DSN: "postgres://u:hunter2@" + addr + "/x?sslmode=disable"})
	})
	v := e.victim(t, "e2e_dead", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_dead")
	b := string(listing.Blocks)
	if !strings.Contains(b, "*dead* could not be read") || !strings.Contains(b, fmt.Sprintf("*pid %d*", v.PID)) {
		t.Errorf("listing: %s", b)
	}
	if strings.Contains(b, "hunter2") || strings.Contains(e.logs.String(), "hunter2") {
		t.Error("password shown")
	}
	// Nothing running on the healthy target: still no all-clear, since the
	// dead one could not be read.
	empty := e.list(t, requester, "0s app=e2e_dead_nothing")
	if b := string(empty.Blocks); !strings.Contains(b, "this is not an all-clear") || strings.Contains(b, ":white_check_mark:") {
		t.Errorf("an empty listing with a dead target reads as an all-clear: %s", b)
	}
}

// A role that cannot see other roles' sessions says so: the listing counts
// them and is no all-clear.
func TestHiddenSessionsCounted(t *testing.T) {
	t.Parallel()
	blind := pgtest.Role(t, "e2e_blind")
	pgtest.Role(t, "e2e_other")
	e := start(t, func(_ *config.Config, specs *[]pg.TargetSpec) { (*specs)[0].DSN = blind })
	other := pgtest.NewSession(t, pgtest.DSNAs(t, "e2e_other"), "e2e_hidden")
	other.Run("SELECT pg_sleep(600)")
	e.slack.Eventually(t, 15*time.Second, "the other role's query to run", func() bool {
		return pgtest.Int(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", other.PID) == 1
	})
	listing := e.list(t, requester, "0s")
	b := string(listing.Blocks)
	if !strings.Contains(b, "of other roles are hidden") || !strings.Contains(b, "GRANT pg_read_all_stats") || strings.Contains(b, ":white_check_mark:") {
		t.Errorf("hidden sessions not told: %s", b)
	}
}

func TestRefreshAndRateLimit(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.slack.RateLimit("chat.postMessage", 1)
	v := e.victim(t, "e2e_refresh", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=e2e_refresh")
	if len(e.logs.records("slack rate limited")) != 1 {
		t.Errorf("429 not retried after Retry-After: %v", e.logs.records("slack rate limited"))
	}
	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", v.PID)
	v.Result(t)
	e.slack.Click(t, requester, listing, blocks.ActionRefresh, "")
	e.slack.Eventually(t, 15*time.Second, "the listing refreshed in place", func() bool {
		m, _ := e.slack.Message(listing.Channel, listing.TS)
		return m.Updates == 1 && strings.Contains(string(m.Blocks), ":white_check_mark: No queries ≥ 0s on *main* (`app=e2e_refresh`).")
	})
}

// listNow reads the database directly (not through Slack).
func (e *env) listNow(t *testing.T, app string) []pg.Backend {
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "main", DSN: e.dsn}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	l, _ := tg.List(t.Context(), pg.Filter{Application: app})
	return l.Backends
}

// SIGTERM while an approved signal is being verified: pgkill stops taking
// events but finishes the action and reports it before it returns.
func TestShutdownFinishesInFlightAction(t *testing.T) {
	t.Parallel()
	fake := fakeslack.New(t)
	e, stop := startOn(t, fake, func(c *config.Config, _ *[]pg.TargetSpec) { c.VerifyTimeout = 2 * time.Second })
	v := e.victim(t, "e2e_shutdown", `DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(60); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`)
	listing := e.list(t, requester, "0s app=e2e_shutdown")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.slack.Eventually(t, 10*time.Second, "the approval", func() bool { return len(e.audits(approval.AuditApprove)) == 1 })
	stop() // as on SIGTERM, in the middle of the 2 s verification
	if n := len(e.audits(approval.AuditOutcome)); n != 1 {
		t.Fatalf("%d outcomes recorded by the time Serve returned, want 1", n)
	}
	if m, _ := e.slack.Message(card.Channel, card.TS); !strings.Contains(string(m.Blocks), "still running") {
		t.Errorf("card not updated before exit: %s", m.Blocks)
	}
	pgtest.Exec(t, "SELECT pg_terminate_backend($1)", v.PID)
}

// With chat.update hung, an approval still signals at once, and a SIGTERM
// arriving meanwhile still waits for the outcome record: Slack's trouble
// never delays the signal nor loses the audit trail.
func TestApproveWithSlackHungThenShutdown(t *testing.T) {
	t.Parallel()
	fake := fakeslack.New(t)
	e, stop := startOn(t, fake)
	v := e.victim(t, "e2e_hung_slack", "SELECT pg_sleep(600)")
	listing := e.list(t, requester, "0s app=e2e_hung_slack")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	release := fake.Stall("chat.update")
	defer release()
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Fatalf("victim SQLSTATE %q, want 57014: the signal waited on Slack", code)
	}
	e.slack.Eventually(t, 20*time.Second, "a hung chat.update", func() bool { return fake.Stalled("chat.update") > 0 })
	stop() // SIGTERM while Slack hangs
	if n := len(e.audits(approval.AuditOutcome)); n != 1 {
		t.Errorf("%d outcome records when Serve returned, want 1", n)
	}
}
