package bot_test

import (
	"fmt"
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

// sessions starts n sessions of app each running sql, and waits until the
// database shows them all running it.
func sessions(t *testing.T, e *env, app, sql string, n int) []*pgtest.Session {
	t.Helper()
	out := make([]*pgtest.Session, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = pgtest.NewSession(t, e.dsn, app) }()
	}
	wg.Wait()
	for _, s := range out {
		s.Run(sql)
	}
	e.slack.Eventually(t, 30*time.Second, fmt.Sprintf("%d sessions of %s to run", n, app), func() bool {
		return pgtest.Int(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query = $2", app, sql) == n
	})
	return out
}

// The card of a bulk request, found by what it says.
func (e *env) bulkCard(t *testing.T, what string, ok func(fakeslack.Message) bool) fakeslack.Message {
	t.Helper()
	var card fakeslack.Message
	e.slack.Eventually(t, 30*time.Second, what, func() bool {
		for _, m := range e.slack.Messages(func(m fakeslack.Message) bool { return m.Channel == channel && !m.Ephemeral }) {
			if ok(m) {
				card = m
				return true
			}
		}
		return false
	})
	return card
}

// 50 sessions of app A and 5 of B; a bulk cancel of app=A: exactly the 50
// that matched when it was asked are signalled — not B, not an A started
// later; a member that moved on to another query or ended before the
// approval is skipped, not signalled.
func TestBulkCancel(t *testing.T) {
	t.Parallel()
	e := start(t)
	as := sessions(t, e, "bulk_a", "SELECT pg_sleep(600)", 50)
	bs := sessions(t, e, "bulk_b", "SELECT pg_sleep(600)", 5)

	id := e.slack.SlashCommand(t, "/pgkill", requester, channel, "cancel 0s app=bulk_a reason=\"INC-7 runaway report\"")
	if ack := e.slack.WaitAck(t, id); len(ack.Payload) != 0 && string(ack.Payload) != "null" {
		t.Fatalf("bulk command refused: %s", ack.Payload)
	}
	card := e.bulkCard(t, "the bulk card", has("*CANCEL ALL 50* sessions", "`bulk_a` ×50", blocks.ActionApprove))

	moved, gone := as[0], as[1]
	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", moved.PID)
	moved.Result(t)
	moved.Run("SELECT pg_sleep(601)")
	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", gone.PID)
	gone.Result(t)
	late := sessions(t, e, "bulk_a_late", "SELECT pg_sleep(600)", 1)[0]
	e.slack.Eventually(t, 30*time.Second, "the moved session's new query", func() bool {
		return pgtest.Int(t, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query = 'SELECT pg_sleep(601)' AND state = 'active'", moved.PID) == 1
	})

	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	done := e.bulkCard(t, "the outcome", has("*48 ended*", "2 skipped"))
	for _, s := range as[2:] {
		if code := pgtest.SQLState(s.Result(t)); code != "57014" {
			t.Errorf("member pid %d: SQLSTATE %q, want 57014", s.PID, code)
		}
	}
	for _, s := range append([]*pgtest.Session{moved, late}, bs...) {
		if !s.Running() {
			t.Errorf("pid %d, not a member any more (or never), was signalled", s.PID)
		}
	}
	if strings.Contains(string(done.Blocks), blocks.ActionApprove) {
		t.Errorf("the outcome card still has Approve: %s", done.Blocks)
	}
	if r := e.audits(approval.AuditOutcome); len(r) != 1 || r[0]["ended"] != float64(48) || r[0]["skipped"] != float64(2) || r[0]["members"] != float64(50) {
		t.Errorf("outcome record: %v", r)
	}
	list := e.slack.Messages(func(m fakeslack.Message) bool { return m.ThreadTS == card.TS && strings.Contains(m.Text, "sessions") })
	if len(list) != 2 {
		t.Errorf("the whole list in the thread: %d messages, want 2", len(list))
	}
}

// A bulk command needs a target or a filter, and respects PGKILL_BULK_MAX.
func TestBulkRefusals(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.BulkMax = 2 })
	if m := e.ask(t, requester, channel, "terminate 5m"); !strings.Contains(string(m.Blocks), "at least one target or filter") {
		t.Errorf("a fleet-wide terminate was not refused: %s", m.Blocks)
	}
	sessions(t, e, "bulk_cap", "SELECT pg_sleep(600)", 3)
	e.slack.WaitAck(t, e.slack.SlashCommand(t, "/pgkill", requester, channel, "terminate 0s app=bulk_cap"))
	e.told(t, requester, "PGKILL_BULK_MAX=2")
}

// Cancel all on a listing acts on what that listing matched; sessions that
// swallow the cancel are then offered as "Terminate the 2 still running", a
// new request with its own approval.
func TestBulkFromListingThenTerminateTheRest(t *testing.T) {
	t.Parallel()
	e := start(t)
	plain := sessions(t, e, "bulk_list", "SELECT pg_sleep(600)", 2)
	swallow := `DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(60); EXCEPTION WHEN query_canceled THEN NULL; END; END LOOP; END $$`
	stubborn := sessions(t, e, "bulk_list", swallow, 2)
	listing := e.list(t, requester, "0s app=bulk_list")
	if !strings.Contains(string(listing.Blocks), "Cancel all 4") {
		t.Fatalf("no Cancel all 4 on the listing: %s", listing.Blocks)
	}
	later := sessions(t, e, "bulk_list", "SELECT pg_sleep(602)", 1)[0] // matches now, not when listed

	e.slack.Click(t, requester, listing, blocks.ActionBulkCancel, "")
	card := e.card(t, listing.TS, "the bulk card", has("*CANCEL ALL 4* sessions"))
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	done := e.card(t, listing.TS, "the outcome", has("*2 ended*", "*2 still running*", "Terminate the 2 still running"))
	for _, s := range plain {
		if code := pgtest.SQLState(s.Result(t)); code != "57014" {
			t.Errorf("pid %d: SQLSTATE %q", s.PID, code)
		}
	}
	if !later.Running() {
		t.Error("a session that started matching after the listing was signalled")
	}

	e.slack.Click(t, requester, done, blocks.ActionBulkNext, "")
	next := e.card(t, listing.TS, "the terminate card", has("*TERMINATE ALL 2* sessions", "still running after"))
	e.slack.Click(t, approver, next, blocks.ActionApprove, "")
	e.card(t, listing.TS, "the terminate outcome", has("*TERMINATE ALL 2*", "*2 ended*"))
	for _, s := range stubborn {
		if code := pgtest.SQLState(s.Result(t)); code != "57P01" {
			t.Errorf("pid %d: SQLSTATE %q, want 57P01", s.PID, code)
		}
	}
	if !later.Running() {
		t.Error("the later session was terminated")
	}
}
