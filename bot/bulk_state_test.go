package bot_test

import (
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/approval"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// With a state store, a bulk request that needs two approvals survives a
// restart between them: the second approval, in the new process, signals
// the set once. One member catches cancels and counts each one in a
// sequence (nextval is not rolled back), so a second signal would show.
func TestBulkTwoApprovalsAcrossRestart(t *testing.T) {
	t.Parallel()
	fake := fakeslack.New(t)
	state := func(c *config.Config, _ *[]pg.TargetSpec) {
		c.StateDSN, c.Approvals = pgtest.Database(t, "state_bulk"), "bulk=2"
	}
	pgtest.Exec(t, "CREATE SEQUENCE state_bulk_cancels")
	t.Cleanup(func() { pgtest.Exec(t, "DROP SEQUENCE IF EXISTS state_bulk_cancels") })
	first, stop := startOn(t, fake, state)
	plain := sessions(t, first, "state_bulk", "SELECT pg_sleep(600)", 2)
	counter := sessions(t, first, "state_bulk",
		`DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(60); EXCEPTION WHEN query_canceled THEN PERFORM nextval('state_bulk_cancels'); END; END LOOP; END $$`, 1)[0]
	// It swallows cancels: terminate it before its session's cleanup waits.
	t.Cleanup(func() { pgtest.Exec(t, "SELECT pg_terminate_backend($1)", counter.PID) })

	id := fake.SlashCommand(t, "/pgkill", requester, channel, "cancel 0s app=state_bulk")
	fake.WaitAck(t, id)
	card := first.bulkCard(t, "the bulk card", has("*CANCEL ALL 3* sessions", "*0 of 2 approvals*"))
	fake.Click(t, approver, card, blocks.ActionApprove, "")
	card = first.bulkCard(t, "one of two approvals", has("*CANCEL ALL 3*", "*1 of 2 approvals*: <@U0APPROVER>", blocks.ActionApprove))
	stop() // pgkill restarts with one approval recorded
	for _, s := range append(plain, counter) {
		if !s.Running() {
			t.Fatalf("pid %d ended after one approval of two", s.PID)
		}
	}

	second, _ := startOn(t, fake, state)
	fake.Eventually(t, 15*time.Second, "the new process to connect", func() bool { return fake.Connections() >= 2 && fake.Connected() })
	fake.Click(t, groupie, card, blocks.ActionApprove, "")
	second.bulkCard(t, "the outcome", has("*CANCEL ALL 3*", "*2 ended*", "*1 still running*"))
	for _, s := range plain {
		if code := pgtest.SQLState(s.Result(t)); code != "57014" {
			t.Errorf("pid %d: SQLSTATE %q, want 57014", s.PID, code)
		}
	}
	if n := pgtest.Int(t, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM state_bulk_cancels"); n != 1 {
		t.Errorf("the counting member caught %d cancels, want 1: the set was signalled %d times", n, n)
	}
	if n := len(first.audits(approval.AuditOutcome)) + len(second.audits(approval.AuditOutcome)); n != 1 {
		t.Errorf("%d outcome records, want 1", n)
	}
	if n := len(first.audits(approval.AuditApprove)) + len(second.audits(approval.AuditApprove)); n != 2 {
		t.Errorf("%d approvals recorded, want 2", n)
	}
}
