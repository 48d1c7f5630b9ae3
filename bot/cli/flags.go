package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg/match"
)

// minFlag is -min: a duration with a unit, never negative. A bare number is
// refused with a hint rather than read as nanoseconds or seconds.
type minFlag struct {
	d   time.Duration
	set bool
}

func (f *minFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.d.String()
}

func (f *minFlag) Set(s string) error {
	d, err := parseMin(s)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

func parseMin(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		if s == "0" {
			return 0, nil
		}
		return 0, fmt.Errorf("%q: add a unit, e.g. %ss", s, strings.TrimPrefix(s, "-"))
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number with a unit, e.g. 30s, 5m, 1h", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative (0s lists every session)", s)
	}
	return d, nil
}

// States -state accepts, each with what it includes.
var states = []struct{ name, includes string }{
	{"active", "sessions running a statement now"},
	{"idle-in-transaction", "sessions waiting for their client inside an open transaction, aborted ones included"},
	{"all", "both of the above (the default; plain idle sessions are never listed)"},
}

func stateHelp() string {
	var parts []string
	for _, s := range states {
		parts = append(parts, s.name+": "+s.includes)
	}
	return strings.Join(parts, "; ")
}

// parseState checks -state and says what each value includes when it is
// wrong.
func parseState(s string) (string, error) {
	if s == "" {
		return "all", nil
	}
	for _, st := range states {
		if s == st.name {
			return s, nil
		}
	}
	return "", fmt.Errorf("-state %q: state must be one of %s", s, stateHelp())
}

// patternFlag is -db, -user, -app: a shell pattern (*, ?, [a-z]) matched
// by pg/match, as the alert settings are.
type patternFlag string

func (p *patternFlag) String() string { return string(*p) }

func (p *patternFlag) Set(s string) error {
	if err := match.CheckPattern(s); err != nil {
		return err
	}
	*p = patternFlag(s)
	return nil
}

// watchFlag is -watch [interval]: alone it means every 2s.
type watchFlag struct{ every time.Duration }

const defaultWatch = 2 * time.Second

func (w *watchFlag) String() string {
	if w == nil || w.every == 0 {
		return ""
	}
	return w.every.String()
}

func (w *watchFlag) IsBoolFlag() bool { return true }

func (w *watchFlag) Set(s string) error {
	switch s {
	case "true":
		w.every = defaultWatch
		return nil
	case "false":
		w.every = 0
		return nil
	}
	d, err := parseMin(s)
	if err != nil {
		return err
	}
	if d < 100*time.Millisecond {
		return errors.New("the interval must be at least 100ms")
	}
	w.every = d
	return nil
}

// joinWatch rewrites "-watch 5s" as "-watch=5s" so that -watch may be given
// with or without an interval: the flag package reads a boolean flag's
// value only after "=".
func joinWatch(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "-watch" || a == "--watch") && i+1 < len(args) && looksLikeDuration(args[i+1]) {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		out = append(out, a)
	}
	return out
}

func looksLikeDuration(s string) bool {
	if _, err := time.ParseDuration(s); err == nil {
		return true
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil // a bare number: Set explains the missing unit
}

// Help reports whether args ask for help (-h, -help, --help) before a "--".
func Help(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}
