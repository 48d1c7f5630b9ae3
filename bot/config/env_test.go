package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/config"
)

// Every malformed variable is reported at once, each once, by name, without
// envconfig's wording; what parsed keeps its value and the rest their
// defaults.
func TestLoadConfigReportsEveryVariable(t *testing.T) {
	t.Setenv("PGKILL_MIN_DURATION", "soon")
	t.Setenv("PGKILL_ALERT_MAX_PER_POLL", "many")
	t.Setenv("PGKILL_SELF_APPROVAL", "perhaps")
	t.Setenv("PGKILL_VERIFY_TIMEOUT", "3s")
	t.Setenv("PGKILL_LOG_FORMAT", "xml")
	cfg, err := config.Load()
	if cfg.VerifyTimeout != 3*time.Second || cfg.PollInterval != 15*time.Second {
		t.Errorf("parsed values lost: verify %v, poll %v", cfg.VerifyTimeout, cfg.PollInterval)
	}
	all := config.Errors(err, cfg.Validate())
	lines := strings.Split(all.Error(), "\n")
	want := []string{
		`PGKILL_MIN_DURATION: "soon" is not a duration`,
		`PGKILL_SELF_APPROVAL: "perhaps" is not true or false`,
		`PGKILL_ALERT_MAX_PER_POLL: "many" is not a whole number`,
		`PGKILL_LOG_FORMAT must be json or text, not "xml"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), all)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want %q…", i+1, lines[i], w)
		}
	}
	if strings.Contains(all.Error(), "envconfig") {
		t.Errorf("envconfig's wording: %s", all)
	}
}

// A bad PGKILL_REDACT is one problem among the others, not the only one
// reported.
func TestValidateReportsRedactWithTheRest(t *testing.T) {
	cfg := config.Config{Redact: "bad", LogFormat: "xml", LogLevel: "info", VerifyTimeout: time.Second, ConnectTimeout: time.Second,
		ApprovalTTL: time.Minute, AlertAfter: time.Minute, PollInterval: time.Second, AlertEditEvery: time.Minute, AlertMaxPerPoll: 1}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "PGKILL_REDACT") || !strings.Contains(err.Error(), "PGKILL_LOG_FORMAT") {
		t.Errorf("Validate = %v, want both PGKILL_REDACT and PGKILL_LOG_FORMAT", err)
	}
}
