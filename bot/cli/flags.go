package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
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

func stateHelp() string { return pg.FilterStateHelp() }

// parseState reads -state with pg's one parser, as Slack's state= is read.
func parseState(s string) (string, error) {
	st, err := pg.ParseFilterState(s)
	if err != nil {
		return "", fmt.Errorf("-state: %w", err)
	}
	return st, nil
}

// waitFlag is -wait: how long to wait for a slow server.
type waitFlag struct{ d time.Duration }

// DefaultWait is -wait's default: a lock pile-up of a thousand sessions
// held new connections for 21 s (median) to 47 s.
const DefaultWait = time.Minute

func (w *waitFlag) String() string {
	if w == nil || w.d == 0 {
		return ""
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	d, err := parseMin(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		return errors.New("the wait must be longer than 0")
	}
	w.d = d
	return nil
}

// or is the wait, DefaultWait when not given.
func (w waitFlag) or() time.Duration {
	if w.d == 0 {
		return DefaultWait
	}
	return w.d
}

const waitUsage = "how long to wait for a slow server: a connection the server does not start (in a lock pile-up new sessions wait until it ends) and the blocking tree (default 1m)"

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
