package bot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/approval"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// With a state store, a request made before a restart is approved after it,
// on the same card, and signals once.
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	fake := fakeslack.New(t)
	state := func(c *config.Config, _ *[]pg.TargetSpec) { c.StateDSN = pgtest.Database(t, "state_restart") }
	first, stop := startOn(t, fake, state)
	v := first.victim(t, "state_restart", "SELECT pg_sleep(60)")
	listing := first.list(t, requester, "0s app=state_restart")
	card := first.request(t, requester, listing, v, blocks.ActionCancel)
	stop() // pgkill restarts

	second, _ := startOn(t, fake, state)
	fake.Eventually(t, 15*time.Second, "the new process to connect", func() bool { return fake.Connections() >= 2 && fake.Connected() })
	fake.Click(t, approver, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q, want 57014", code)
	}
	done := second.card(t, listing.TS, "the outcome", has("The query ended", "approved by <@U0APPROVER>"))
	if !strings.Contains(string(done.Blocks), "Request R") {
		t.Errorf("card: %s", done.Blocks)
	}
	// A stale click in the new process: already decided, nothing more.
	fake.Click(t, groupie, card, blocks.ActionApprove, "")
	second.told(t, groupie, "already done")
}

// A request pending when pgkill stops still expires on time after it starts
// again.
func TestStateExpiresAfterRestart(t *testing.T) {
	t.Parallel()
	fake := fakeslack.New(t)
	state := func(c *config.Config, _ *[]pg.TargetSpec) {
		c.StateDSN, c.ApprovalTTL = pgtest.Database(t, "state_expire"), 3*time.Second
	}
	first, stop := startOn(t, fake, state)
	v := first.victim(t, "state_expire", "SELECT pg_sleep(60)")
	listing := first.list(t, requester, "0s app=state_expire")
	fake.Click(t, requester, listing, blocks.ActionTerminate, pidValue(v))
	first.card(t, listing.TS, "the approval card", has("asks to *TERMINATE*"))
	stop()
	second, _ := startOn(t, fake, state)
	second.card(t, listing.TS, "expiry after the restart", has("*Expired*"))
	if !v.Running() {
		t.Error("victim ended")
	}
	if n := len(second.audits(approval.AuditExpire)); n != 1 {
		t.Errorf("the restarted process expired %d requests, want 1", n)
	}
}
