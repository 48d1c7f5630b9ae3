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

// PGKILL_REASON=bulk: Cancel all opens the reason form; "." is refused in
// the form itself, a sentence makes the bulk request with the reason on its
// card and in its audit records.
func TestBulkClickAsksForAReason(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.Reason = "bulk" })
	victims := sessions(t, e, "bulk_reason", "SELECT pg_sleep(600)", 3)
	listing := e.list(t, requester, "0s app=bulk_reason")
	e.slack.WaitAck(t, e.slack.Click(t, requester, listing, blocks.ActionBulkCancel, ""))
	var form fakeslack.Modal
	e.slack.Eventually(t, 20*time.Second, "the reason form", func() bool {
		ms := e.slack.Modals(requester)
		if len(ms) > 0 {
			form = ms[0]
		}
		return len(ms) > 0
	})
	if !strings.Contains(string(form.View), "Cancel all 3") || !strings.Contains(string(form.View), "Required") {
		t.Errorf("form: %s", form.View)
	}
	if cards := e.slack.Messages(func(m fakeslack.Message) bool { return m.ThreadTS == listing.TS }); len(cards) != 0 {
		t.Errorf("a request was made before the reason: %d messages in the thread", len(cards))
	}
	ack := e.slack.WaitAck(t, e.slack.Submit(t, form, reasonValues(".")))
	if !strings.Contains(string(ack.Payload), `"response_action":"errors"`) || !strings.Contains(string(ack.Payload), "at least three") {
		t.Errorf("a reason of \".\" was not refused in the form: %s", ack.Payload)
	}
	ack = e.slack.WaitAck(t, e.slack.Submit(t, form, reasonValues("INC-9: a bad deploy started these reports")))
	if strings.Contains(string(ack.Payload), "errors") {
		t.Fatalf("a real reason was refused: %s", ack.Payload)
	}
	card := e.card(t, listing.TS, "the bulk card with the reason", has("*CANCEL ALL 3* sessions", "*Reason:* `INC-9: a bad deploy started these reports`"))
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.card(t, listing.TS, "the outcome", has("*3 ended*"))
	for _, v := range victims {
		if code := pgtest.SQLState(v.Result(t)); code != "57014" {
			t.Errorf("pid %d: SQLSTATE %q", v.PID, code)
		}
	}
	for _, ev := range []string{approval.AuditRequest, approval.AuditOutcome} {
		if r := e.audits(ev); len(r) != 1 || r[0]["reason"] != "INC-9: a bad deploy started these reports" {
			t.Errorf("%s record: %v", ev, r)
		}
	}
}
