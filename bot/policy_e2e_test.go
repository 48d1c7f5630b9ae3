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

// publicPosts are the messages everyone in a channel sees.
func publicPosts(e *env) []fakeslack.Message {
	return e.slack.Messages(func(m fakeslack.Message) bool { return !m.Ephemeral })
}

// Outside the allowed channels, in a DM, from another workspace or as a
// non-viewer: a private refusal that says why, nothing posted publicly,
// and the refusal in the audit log.
func TestBoundariesRefuse(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) {
		c.Channels = config.IDList{channel}
		c.Viewers = config.IDList{requester, approver, "S0DBA"}
	})
	cases := []struct {
		name, user, ch, team, want string
	}{
		{"unlisted channel", requester, "C0GENERAL", "", "use it in <#" + channel + ">"},
		{"direct message", requester, "D0DIRECT", "", "use it in <#" + channel + ">"},
		{"not a viewer", stranger, channel, "", "may use pgkill here"},
		{"another workspace", requester, channel, "T0OTHERORG", "its own workspace"},
	}
	for _, tc := range cases {
		e.slack.FromTeam(tc.team)
		id := e.slack.SlashCommand(t, "/pgkill", tc.user, tc.ch, "0s")
		ack := e.slack.WaitAck(t, id)
		e.slack.Eventually(t, 20*time.Second, tc.name+": a private refusal", func() bool {
			if strings.Contains(string(ack.Payload), tc.want) {
				return true
			}
			for _, m := range e.slack.Ephemerals(tc.ch, tc.user) {
				if strings.Contains(string(m.Blocks), tc.want) {
					return true
				}
			}
			return false
		})
	}
	e.slack.FromTeam("")
	if n := len(publicPosts(e)); n != 0 {
		t.Errorf("%d public messages after refused commands", n)
	}
	if n := len(e.audits(approval.AuditRefuse)); n != len(cases) {
		t.Errorf("%d refusals in the audit log, want %d", n, len(cases))
	}
	// Doctor, allowed, is private to the caller.
	e.slack.WaitAck(t, e.slack.SlashCommand(t, "/pgkill", requester, channel, "doctor"))
	e.slack.Eventually(t, 20*time.Second, "the doctor report", func() bool {
		for _, m := range e.slack.Ephemerals(channel, requester) {
			if strings.Contains(m.Text, "doctor") {
				return true
			}
		}
		return false
	})
	if n := len(publicPosts(e)); n != 0 {
		t.Errorf("doctor posted publicly")
	}
}

// Per-target rules from a policy file: the staging approver cannot approve
// a prod request; the prod approver can.
func TestPolicyFilePerTargetApprovers(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("targets:\n  main:\n    approvers: [S0DBA]\n  stage*:\n    approvers: [U0STAGE]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := start(t, func(c *config.Config, specs *[]pg.TargetSpec) {
		c.PolicyFile = file
		*specs = append(*specs, pg.TargetSpec{Name: "stage", DSN: (*specs)[0].DSN})
	})
	v := e.victim(t, "policy_prod", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "main 0s app=policy_prod")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	if !strings.Contains(string(card.Blocks), "<!subteam^S0DBA>") || strings.Contains(string(card.Blocks), "U0APPROVER") {
		t.Errorf("the card does not mention main's approvers only: %s", card.Blocks)
	}
	e.slack.Click(t, "U0STAGE", card, blocks.ActionApprove, "")
	e.told(t, "U0STAGE", "may approve or deny requests on *main*")
	e.slack.Click(t, approver, card, blocks.ActionApprove, "") // a default approver, not main's
	e.told(t, approver, "may approve or deny requests on *main*")
	if !v.Running() {
		t.Fatal("a refused approver ended the query")
	}
	e.slack.Click(t, groupie, card, blocks.ActionApprove, "")
	e.card(t, listing.TS, "the outcome", has("The query ended", "approved by <@U0GROUPIE>"))
}

func TestPolicyFileErrorsNameLines(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("targets:\n  prod:\n    approvers: [bob]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Config{Approvers: config.IDList{"U0X"}, PolicyFile: file}
	_, err := cfg.Policy()
	if err == nil || !strings.Contains(err.Error(), "PGKILL_POLICY_FILE "+file+": line 3: ") {
		t.Errorf("err = %v", err)
	}
}

// Two approvals needed: the first leaves the request pending and says so, a
// second click by the same approver changes nothing, and of ten approvers
// clicking the final approval at once exactly one signals.
func TestTwoApprovals(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.Approvals = "cancel=2" })
	crowd := []string{"U0DBA01", "U0DBA02", "U0DBA03", "U0DBA04", "U0DBA05", "U0DBA06", "U0DBA07", "U0DBA08", "U0DBA09", "U0DBA10"}
	e.slack.SetGroup("S0DBA", append([]string{groupie}, crowd...)...)
	v := e.victim(t, "two_approvals", "SELECT pg_sleep(60)")
	listing := e.list(t, requester, "0s app=two_approvals")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	if !strings.Contains(string(card.Blocks), "*0 of 2 approvals*") {
		t.Errorf("the card does not say two approvals are needed: %s", card.Blocks)
	}
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	card = e.card(t, listing.TS, "one of two approvals", has("*1 of 2 approvals*: <@U0APPROVER>", blocks.ActionApprove))
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.told(t, approver, "you have approved request")
	if !v.Running() {
		t.Fatal("one approval of two ended the query")
	}
	for _, u := range crowd {
		go e.slack.Click(t, u, card, blocks.ActionApprove, "")
	}
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q, want 57014", code)
	}
	e.card(t, listing.TS, "the outcome", has("The query ended", "approved by <@U0APPROVER>"))
	e.slack.Eventually(t, 20*time.Second, "every click answered", func() bool {
		n := 0
		for _, u := range crowd {
			n += len(e.slack.Ephemerals(channel, u))
		}
		return n >= len(crowd)-1
	})
	if n := len(e.audits(approval.AuditOutcome)); n != 1 {
		t.Errorf("%d outcomes (signals), want 1", n)
	}
	if n := len(e.audits(approval.AuditApprove)); n != 2 {
		t.Errorf("%d approvals recorded, want 2", n)
	}
}
