package bot_test

import (
	"os"
	"path/filepath"
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

// A rune whose lower-case form is longer than itself (Ⱥ, 2 bytes, lowers
// to ⱥ, 3 bytes) once made the bulk parser slice out of range on the Socket
// Mode loop: any member, anywhere, stopped the bot. The bot must answer with
// a usage error and go on serving.
func TestCaseFoldingCommandDoesNotStopTheBot(t *testing.T) {
	t.Parallel()
	e := start(t)
	for _, text := range []string{"cancel ȺȺ reason=x", "terminate ȺȺȺȺ REASON=y", "cancel İİ reason=z"} {
		e.slack.SlashCommand(t, "/pgkill", requester, channel, text)
		e.told(t, requester, "Usage:")
	}
	e.victim(t, "still_serving", "SELECT pg_sleep(600)")
	e.list(t, requester, "0s app=still_serving")
}

// writePolicy writes a policy file for the test and returns its path.
func writePolicy(t *testing.T, body string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// Answers that name targets (help, targets, a usage error's list of
// targets) come only after the policy check, and name only what the person
// may see there: a stranger in a direct message learns nothing.
func TestNoAnswerBeforePolicy(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, specs *[]pg.TargetSpec) {
		c.Channels = config.IDList{channel}
		c.PolicyFile = writePolicy(t, "targets:\n  secret-*:\n    viewers: [U0APPROVER]\n")
		*specs = append(*specs, pg.TargetSpec{Name: "secret-payroll", DSN: (*specs)[0].DSN})
	})
	var ids []string
	for _, text := range []string{"targets", "help", "nope", "30 minutes", "doctor secret-payroll", "main", ""} {
		ids = append(ids, e.slack.SlashCommand(t, "/pgkill", stranger, "D0STRANGER", text))
		e.slack.Eventually(t, 20*time.Second, "a refusal for "+text, func() bool {
			return len(e.slack.Ephemerals("D0STRANGER", stranger)) > 0
		})
	}
	// In the channel, the requester may see main but not secret-payroll.
	for _, text := range []string{"targets", "help", "nope"} {
		ids = append(ids, e.slack.SlashCommand(t, "/pgkill", requester, channel, text))
	}
	e.told(t, requester, "• *main*")        // targets
	e.told(t, requester, "Targets: *main*") // help
	e.told(t, requester, "(targets: main)")
	for _, id := range ids {
		if a := e.slack.WaitAck(t, id); len(a.Payload) != 0 && string(a.Payload) != "null" && strings.Contains(string(a.Payload), "secret") {
			t.Errorf("an ack named a target the user may not see: %s", a.Payload)
		}
	}
	for _, m := range e.slack.Messages(nil) {
		if strings.Contains(m.Text+string(m.Blocks), "secret-payroll") {
			t.Errorf("a message to %s in %s names secret-payroll: %s", m.User, m.Channel, m.Text)
		}
		if m.User == stranger && strings.Contains(m.Text+string(m.Blocks), "main") && !strings.Contains(m.Text+string(m.Blocks), "no_entry") {
			t.Errorf("the stranger got an answer that names main: %s", m.Text)
		}
	}
	for _, m := range e.slack.Ephemerals("D0STRANGER", stranger) {
		if !strings.Contains(m.Text+string(m.Blocks), "<#"+channel+">") {
			t.Errorf("the stranger's refusal does not say where pgkill answers: %s", m.Text)
		}
	}
}

// A bulk request needs the strictest of its kind's rules and its action's:
// with terminate=2 and PGKILL_REASON=terminate, `/pgkill terminate …` that
// matches one session needs two approvals and a reason.
func TestBulkTakesTheActionsRules(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) {
		c.Approvals = "terminate=2"
		c.Reason = "terminate"
	})
	v := e.victim(t, "bulk_strict", "SELECT pg_sleep(600)")
	e.slack.SlashCommand(t, "/pgkill", requester, channel, "terminate 0s app=bulk_strict")
	e.told(t, requester, "needs a reason")
	e.slack.SlashCommand(t, "/pgkill", requester, channel, `terminate 0s app=bulk_strict reason="INC-9 report holds locks"`)
	card := e.bulkCard(t, "the bulk card", has("*TERMINATE ALL 1* sessions", "*0 of 2 approvals*"))
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.bulkCard(t, "one of two approvals", has("*TERMINATE ALL 1* sessions", "*1 of 2 approvals*"))
	if !v.Running() {
		t.Fatal("one approval of two terminated the session")
	}
	e.slack.Click(t, groupie, card, blocks.ActionApprove, "")
	e.bulkCard(t, "the outcome", has("*TERMINATE ALL 1* sessions", "ended"))
}

// Nothing a bulk command is given is silently ignored: limit= is refused,
// and an optional reason given on the command line is held to the rule
// every reason is held to.
func TestBulkRefusesWhatItWouldIgnore(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.Reason = "optional" })
	e.slack.SlashCommand(t, "/pgkill", requester, channel, "cancel 0s app=nobody limit=3")
	e.told(t, requester, "limit=")
	e.slack.SlashCommand(t, "/pgkill", requester, channel, `cancel 0s app=nobody reason="."`)
	e.told(t, requester, "reason")
	if n := len(e.audits(approval.AuditRequest)); n != 0 {
		t.Errorf("%d requests made", n)
	}
}

// A click decides a request only from that request's own card: the same
// button value pressed on another message is refused and nothing is
// signalled.
func TestDecisionOnlyFromTheCard(t *testing.T) {
	t.Parallel()
	e := start(t)
	v := e.victim(t, "card_only", "SELECT pg_sleep(600)")
	listing := e.list(t, requester, "0s app=card_only")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	blockID, value, err := fakeslack.FindButton(card, blocks.ActionApprove, "")
	if err != nil {
		t.Fatal(err)
	}
	// The forged button: the card's value, pressed on the listing.
	e.slack.ClickValue(t, approver, listing, blocks.ActionApprove, blockID, value)
	e.told(t, approver, "card")
	if !v.Running() || len(e.audits(approval.AuditApprove)) != 0 {
		t.Fatal("a button pressed off the request's card approved it")
	}
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q after the approval on the card, want 57014", code)
	}
}

// Every write to Slack goes through the outbox and is retried: two HTTP
// 500s on chat.update do not leave the card saying "approval needed", with
// a live Approve button, after the query was cancelled.
func TestCardEndsShowingTheOutcomeThroughSlackErrors(t *testing.T) {
	t.Parallel()
	e := start(t)
	v := e.victim(t, "card_retry", "SELECT pg_sleep(600)")
	listing := e.list(t, requester, "0s app=card_retry")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	e.slack.Fail("chat.update", 2)
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Fatalf("victim SQLSTATE %q, want 57014", code)
	}
	e.card(t, listing.TS, "the outcome on the card", func(m fakeslack.Message) bool {
		return m.TS == card.TS && has("The query ended")(m) && !has(blocks.ActionApprove)(m)
	})
}
