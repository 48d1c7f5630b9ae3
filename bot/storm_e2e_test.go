package bot_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// Inside a lock pile-up's storm — its waiters' deadlock checks holding the
// lock table, new connections and lock-table reads stalled — the bot
// answers /pgkill at once with what it can read without the lock table
// (every session, the likely root blocker marked) and edits the listing in
// place with the tree when the lock table answers; the alert channel says
// "lock pile-up", never "cannot be polled"; and the root's Terminate,
// approved, ends it. Not parallel: the storm stalls the whole server.
func TestLockStormInSlack(t *testing.T) {
	n := pgtest.StormWaiters(t, pgtest.CIStormWaiters)
	storm := pgtest.NewStorm(t, "bot_storm", n)
	e := start(t, func(c *config.Config, specs *[]pg.TargetSpec) {
		*specs = []pg.TargetSpec{{Name: "storm", DSN: storm.DSN}}
		c.AlertChannel, c.PollInterval, c.AlertAfter, c.IdleTxAlertAfter = "C0ALERTS", 500*time.Millisecond, time.Hour, 0
	})
	// Calm: a first waiter makes the listing read the lock table, so both of
	// pgkill's connections are open and warm before the pile-up.
	first := pgtest.NewSession(t, storm.DSN, pgtest.StormApp+"_first")
	first.Run("UPDATE hot SET v = v + 1 WHERE id = 1")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if m := e.list(t, requester, "storm 0s app="+pgtest.StormApp+"*"); strings.Contains(string(m.Blocks), "*Root blocker*") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder was never listed as root while calm")
		}
	}

	storm.Start()
	storm.AwaitStorm(t, 20, 2*time.Minute)
	storm.AwaitStall(t, 300*time.Millisecond, 2*time.Minute)
	asked := time.Now()
	listing := e.list(t, requester, "storm 0s app="+pgtest.StormApp+"*")
	firstAnswer := time.Since(asked)
	if !storm.On(t) {
		t.Fatalf("the storm ended before the listing came (%s): raise PGKILL_STORM_WAITERS", firstAnswer)
	}
	degraded := strings.Contains(string(listing.Blocks), "the lock table is busy")
	holderRow := fmt.Sprintf("*pid %d*", storm.Holder.PID)
	if !strings.Contains(string(listing.Blocks), holderRow) ||
		!(strings.Contains(string(listing.Blocks), "*Likely root blocker*") || !degraded && strings.Contains(string(listing.Blocks), "*Root blocker*")) {
		t.Fatalf("the listing in the storm (degraded %v) does not name the holder as its root:\n%s", degraded, listing.Blocks)
	}
	t.Logf("first answer in the storm after %s (degraded: %v)", firstAnswer, degraded)

	card := e.request(t, requester, listing, storm.Holder, blocks.ActionTerminate)
	approved := time.Now()
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.card(t, listing.TS, "the outcome: the holder's session ended", has("The session ended"))
	t.Logf("the root's session seen ended %s after the approval (the storm on then: %v)", time.Since(approved), storm.On(t))
	storm.AwaitDrained(t, 5*time.Minute)
	if degraded {
		e.slack.Eventually(t, 2*time.Minute, "the listing completed in place", func() bool {
			m, _ := e.slack.Message(listing.Channel, listing.TS)
			return m.Updates > 0 && !strings.Contains(string(m.Blocks), "the lock table is busy")
		})
	}
	e.slack.Eventually(t, time.Minute, "the pile-up alert", func() bool {
		return len(e.slack.Messages(func(m fakeslack.Message) bool {
			return m.Channel == "C0ALERTS" && strings.Contains(m.Text, "lock pile-up on storm")
		})) > 0
	})
	if down := e.slack.Messages(func(m fakeslack.Message) bool { return strings.Contains(m.Text, "cannot be polled") }); len(down) > 0 {
		t.Errorf("the storm was reported as the target down: %s", down[0].Text)
	}
	if err := storm.Err(); err != nil {
		t.Error(err)
	}
}
