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

func reasonValues(text string) map[string]map[string]string {
	return map[string]map[string]string{blocks.ReasonBlock: {blocks.ReasonAction: text}}
}

// A required reason: Cancel opens a form; "." is refused in the form
// itself, a real sentence makes the request; the reason is on the card, in
// the outcome, in the audit record and in the audit channel.
func TestRequiredReason(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.Reason, c.AuditChannel = "cancel", "C0AUDIT" })
	v := e.victim(t, "reason_required", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=reason_required")
	e.slack.WaitAck(t, e.slack.Click(t, requester, listing, blocks.ActionCancel, pidValue(v)))
	var form fakeslack.Modal
	e.slack.Eventually(t, 20*time.Second, "the reason form", func() bool {
		ms := e.slack.Modals(requester)
		if len(ms) > 0 {
			form = ms[0]
		}
		return len(ms) > 0
	})
	if !strings.Contains(string(form.View), "Required") || !strings.Contains(string(form.View), "pg_sleep") {
		t.Errorf("form: %s", form.View)
	}
	ack := e.slack.WaitAck(t, e.slack.Submit(t, form, reasonValues(".")))
	if !strings.Contains(string(ack.Payload), `"response_action":"errors"`) || !strings.Contains(string(ack.Payload), "at least three") {
		t.Errorf("a reason of \".\" was not refused in the form: %s", ack.Payload)
	}
	ack = e.slack.WaitAck(t, e.slack.Submit(t, form, reasonValues("INC-42: report blocks <checkout> *now*")))
	if strings.Contains(string(ack.Payload), "errors") {
		t.Fatalf("a real reason was refused: %s", ack.Payload)
	}
	card := e.card(t, listing.TS, "the card with the reason", has("asks to *CANCEL*", "*Reason:* `INC-42: report blocks &lt;checkout&gt; *now*`"))
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q", code)
	}
	e.card(t, listing.TS, "the outcome with the reason", has("The query ended", "*Reason:*"))
	for _, ev := range []string{approval.AuditRequest, approval.AuditOutcome} {
		if r := e.audits(ev); len(r) != 1 || r[0]["reason"] != "INC-42: report blocks <checkout> *now*" {
			t.Errorf("%s record: %v", ev, r)
		}
	}
	e.slack.Eventually(t, 10*time.Second, "the reason in the audit channel", func() bool {
		for _, m := range e.slack.Messages(func(m fakeslack.Message) bool { return m.Channel == "C0AUDIT" }) {
			if strings.Contains(string(m.Blocks), "reason `INC-42") {
				return true
			}
		}
		return false
	})
}

// An optional reason may be left empty; the request is made without one.
func TestOptionalReasonMayBeEmpty(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.Reason = "optional" })
	v := e.victim(t, "reason_optional", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=reason_optional")
	e.slack.Click(t, requester, listing, blocks.ActionTerminate, pidValue(v))
	var form fakeslack.Modal
	e.slack.Eventually(t, 20*time.Second, "the reason form", func() bool {
		ms := e.slack.Modals(requester)
		if len(ms) > 0 {
			form = ms[0]
		}
		return len(ms) > 0
	})
	ack := e.slack.WaitAck(t, e.slack.Submit(t, form, reasonValues("")))
	if strings.Contains(string(ack.Payload), "errors") {
		t.Fatalf("an empty optional reason was refused: %s", ack.Payload)
	}
	card := e.card(t, listing.TS, "the card", has("asks to *TERMINATE*"))
	if strings.Contains(string(card.Blocks), "Reason:") {
		t.Errorf("an empty reason is shown: %s", card.Blocks)
	}
}
