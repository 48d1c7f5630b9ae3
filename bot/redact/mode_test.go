package redact_test

import (
	"strings"
	"testing"

	"github.com/pgkill/pgkill/bot/redact"
)

func TestParseMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want redact.Mode
	}{{"", redact.Literals}, {"literals", redact.Literals}, {" LITERALS ", redact.Literals}, {"none", redact.None}, {"None", redact.None}} {
		got, err := redact.ParseMode(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"all", "literal", "off", "true"} {
		m, err := redact.ParseMode(in)
		if err == nil {
			t.Errorf("ParseMode(%q) = %v, want an error", in, m)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "literals") || !strings.Contains(msg, "none") || !strings.Contains(msg, in) {
			t.Errorf("ParseMode(%q) error %q should name the allowed values and the value given", in, msg)
		}
		if m != redact.Literals {
			t.Errorf("ParseMode(%q) on error = %v, want literals (hide more)", in, m)
		}
	}
}

func TestModeApply(t *testing.T) {
	q := "SELECT 'sk_live_mode'"
	if got := redact.Literals.Apply(q); got != "SELECT ?" {
		t.Errorf("Literals.Apply = %q", got)
	}
	if got := redact.None.Apply(q); got != q {
		t.Errorf("None.Apply = %q", got)
	}
	if redact.Literals.String() != "literals" || redact.None.String() != "none" {
		t.Errorf("String: %q, %q", redact.Literals, redact.None)
	}
}
