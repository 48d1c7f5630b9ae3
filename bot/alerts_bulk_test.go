package bot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// A flood of runaway queries: the summary offers Cancel all for every
// query it counts; the bulk card goes in the summary's thread, and its
// approval ends them all. Not parallel: the watcher sees every session.
func TestAlertFloodCancelAll(t *testing.T) {
	dsn := pgtest.DSN(t)
	var victims []*pgtest.Session
	for range 7 {
		s := pgtest.NewSession(t, dsn, "flood_all")
		s.Run("SELECT pg_sleep(600)")
		victims = append(victims, s)
	}
	// All past the alert threshold before the first poll, so that one poll
	// finds all seven: the server's clock decides, with a deadline.
	deadline := time.Now().Add(20 * time.Second)
	for pgtest.Int(t, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flood_all' AND state = 'active' AND now() - query_start > interval '1 second'") != 7 {
		if time.Now().After(deadline) {
			t.Fatal("the seven victims are not running")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e := start(t, withAlerts)
	summary := e.waitAlert(t, 15*time.Second, "the summary", "7 runaway queries at once")
	if !strings.Contains(string(summary.Blocks), "Cancel all 7") || !strings.Contains(string(summary.Blocks), "Terminate all 7") {
		t.Fatalf("no Cancel all 7 on the summary: %s", summary.Blocks)
	}
	late := e.victim(t, "flood_all", "SELECT pg_sleep(601)") // not counted by the summary

	e.slack.Click(t, requester, summary, blocks.ActionBulkCancel, "")
	card := e.card(t, summary.TS, "the bulk card in the summary's thread", has("*CANCEL ALL 7* sessions", "runaway queries of the alert summary on main", blocks.ActionApprove))
	if card.Channel != alertChannel {
		t.Errorf("the card went to %s, want the alert channel", card.Channel)
	}
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.card(t, summary.TS, "the outcome", has("*7 ended*", "0 skipped"))
	for _, v := range victims {
		if code := pgtest.SQLState(v.Result(t)); code != "57014" {
			t.Errorf("pid %d: SQLSTATE %q, want 57014", v.PID, code)
		}
	}
	if !late.Running() {
		t.Error("a query the summary did not count was signalled")
	}
}
