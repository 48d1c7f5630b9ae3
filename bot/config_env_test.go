package bot_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot"
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
	cfg, err := bot.LoadConfig()
	if cfg.VerifyTimeout != 3*time.Second || cfg.PollInterval != 15*time.Second {
		t.Errorf("parsed values lost: verify %v, poll %v", cfg.VerifyTimeout, cfg.PollInterval)
	}
	all := bot.ConfigErrors(err, cfg.Validate())
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
