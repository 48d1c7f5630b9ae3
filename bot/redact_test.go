package bot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// redactSecrets are planted in the victim's literals and comments.
var redactSecrets = []string{
	"sk_live_incomment", "123-45-6789", "alice@example.com", "sk_live_dollarquoted",
	"4111 1111 1111 1111", "4111111111111111", "987-65-4321", "sk_live_escaped",
}

// redactVictimSQL waits on an advisory lock the test holds, so it is still
// running however slow the machine, and carries a secret in every kind of
// literal and comment.
const redactVictimSQL = `SELECT /* api_key='sk_live_incomment' ssn=123-45-6789 */ pg_advisory_lock(4242),
  'alice@example.com' AS email, $tag$sk_live_dollarquoted$tag$ AS token,
  E'\'4111 1111 1111 1111' AS card, 4111111111111111 AS pan, e'sk_live_escaped\\' AS k -- ssn 987-65-4321`

// With the default PGKILL_REDACT, no planted secret reaches Slack — listing,
// alert, approval card, outcome, audit channel — or the logs. Not parallel:
// the alert watcher sees every session of the shared server.
func TestRedactedEverywhere(t *testing.T) {
	e := start(t, withAlerts, func(c *config.Config, _ *[]pg.TargetSpec) { c.AuditChannel = "C0AUDIT" })
	holder := pgtest.NewSession(t, e.dsn, "e2e_redact_holder")
	holder.Exec(t, "SELECT pg_advisory_lock(4242)")
	v := e.victim(t, "e2e_redact", redactVictimSQL)

	listing := e.list(t, requester, "main 0s app=e2e_redact")
	if !strings.Contains(string(listing.Blocks), "pg_advisory_lock(?)") {
		t.Fatalf("listing lacks the redacted query: %s", listing.Blocks)
	}
	e.waitAlert(t, 20*time.Second, "the alert", "pg_advisory_lock(?)")

	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	e.slack.WaitAck(t, e.slack.Click(t, approver, card, blocks.ActionApprove, ""))
	if code := pgtest.SQLState(v.Result(t)); code != "57014" {
		t.Errorf("victim SQLSTATE %q, want 57014", code)
	}
	e.card(t, listing.TS, "the outcome", has("The query ended", "pg_advisory_lock(?)"))
	e.slack.Eventually(t, 10*time.Second, "three lines in the audit channel", func() bool {
		return len(e.slack.Messages(func(m fakeslack.Message) bool { return m.Channel == "C0AUDIT" })) == 3
	})

	for _, secret := range e.secretsShown() {
		t.Errorf("%q reached Slack or the logs", secret)
	}
}

// The control: with PGKILL_REDACT=none the same query is posted as is, so
// the planted secrets do reach pg_stat_activity and secretsShown finds them.
func TestRedactNoneShowsQueryText(t *testing.T) {
	t.Parallel()
	e := start(t, func(c *config.Config, _ *[]pg.TargetSpec) { c.Redact = "none" })
	holder := pgtest.NewSession(t, e.dsn, "e2e_redact_none_holder")
	holder.Exec(t, "SELECT pg_advisory_lock(4243)")
	e.victim(t, "e2e_redact_none", strings.Replace(redactVictimSQL, "4242", "4243", 1))
	e.list(t, requester, "main 0s app=e2e_redact_none")
	if got := e.secretsShown(); len(got) != len(redactSecrets) {
		t.Errorf("PGKILL_REDACT=none showed %q, want all of %q", got, redactSecrets)
	}
}

// secretsShown returns the planted secrets redactVictimSQL holds that
// reached Slack or the logs (see shown).
func (e *env) secretsShown() []string { return e.shown(redactSecrets) }

func TestRedactSetting(t *testing.T) {
	var cfg config.Config
	if err := envconfig.Process("", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Redact != "literals" {
		t.Errorf("PGKILL_REDACT defaults to %q, want literals", cfg.Redact)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("default configuration: %v", err)
	}
	t.Setenv("PGKILL_REDACT", "all")
	if err := envconfig.Process("", &cfg); err != nil {
		t.Fatal(err)
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal(`PGKILL_REDACT=all accepted`)
	}
	for _, want := range []string{"PGKILL_REDACT", "literals", "none", `"all"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
}
