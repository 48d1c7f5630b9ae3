// Package cli is pgkill's command line: list, cancel, terminate and doctor
// from a terminal, without Slack.
package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/pg"
)

// Options are the settings the command line uses, built by main from the
// configuration.
type Options struct {
	MinDuration   time.Duration // PGKILL_MIN_DURATION: list's default -min
	VerifyTimeout time.Duration // PGKILL_VERIFY_TIMEOUT: how long to watch a signalled backend
	BulkMax       int           // PGKILL_BULK_MAX: the most sessions cancel|terminate without pids may signal (0: DefaultBulkMax)
	// TargetsFrom says where the configured targets come from:
	// "PGKILL_TARGETS", "DATABASE_URL" or "the libpq PG* variables".
	TargetsFrom string
	// Unconfigured: none of them is set, so the one target is libpq's
	// default server. A failure to read it then says first how to
	// configure pgkill.
	Unconfigured bool
	// Terminal: Out is a terminal, so -watch redraws in place.
	Terminal bool
	// Rules are the autopilot's rules (PGKILL_POLICY_FILE), for
	// `pgkill autopilot test`.
	Rules []autopilot.Rule
	// Width is the terminal's width in columns (COLUMNS, or the
	// terminal's size); 0 when unknown or not a terminal: the table is
	// then never cut to fit.
	Width int
}

// CLI runs one command. Every method prints what happened and returns nil or
// an *Exit (Code gives the process's exit code); text from the databases is
// printed only as Visible makes it.
type CLI struct {
	DB   fleet.DB
	Opts Options
	In   io.Reader // answers to the y/N question
	Out  io.Writer
	Err  io.Writer
}

// Exit codes a script can rely on (README, "Exit codes").
const (
	ExitOK           = 0 // done: listed, or every signalled backend ended
	ExitError        = 1 // an error (configuration, an outcome that cannot be known)
	ExitUsage        = 2 // bad command line
	ExitUnreadable   = 3 // a target could not be read
	ExitStillRunning = 4 // signal sent, but the backend still runs
	ExitNothingDone  = 5 // not confirmed, or nothing signalled (refused, gone, hidden)
)

// Exit is the error every command ends with when it did not succeed: the
// user has already been told why, and Code is the process's exit code.
type Exit struct {
	Code int
}

func (e *Exit) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// exit is nil for ExitOK, else an *Exit.
func exit(code int) error {
	if code == ExitOK {
		return nil
	}
	return &Exit{Code: code}
}

// Code is the exit code err stands for: 0 for nil, Exit.Code for an *Exit,
// 1 for anything else.
func Code(err error) int {
	var e *Exit
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &e):
		return e.Code
	}
	return ExitError
}

// worse picks the exit code that says more: an error first, then an
// unreadable target, a backend still running, nothing signalled, done.
func worse(a, b int) int {
	rank := func(c int) int {
		switch c {
		case ExitError:
			return 5
		case ExitUsage:
			return 4
		case ExitUnreadable:
			return 3
		case ExitStillRunning:
			return 2
		case ExitNothingDone:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// usageError prints msg and the command's one-line usage, and exits 2.
func (c *CLI) usageError(cmd, format string, args ...any) error {
	// -watch is a boolean flag to the flag package (so that it may stand
	// alone): its errors must not speak of booleans.
	msg := strings.Replace(fmt.Sprintf(format, args...), "invalid boolean value", "invalid value", 1)
	fmt.Fprintf(c.Err, "%s: %s\n", cmd, Visible(msg))
	if u := synopsis(cmd); u != "" {
		fmt.Fprintf(c.Err, "usage: %s\n(pgkill %s -h for more)\n", u, cmd)
	}
	return exit(ExitUsage)
}

// names are the targets' names in configuration order.
func (c *CLI) names() []string {
	var names []string
	for _, s := range c.DB.Specs() {
		names = append(names, s.Name)
	}
	return names
}

// targets turns a -target flag into the target list (empty: all); an
// unknown name is a usage error.
func (c *CLI) targets(cmd, target string) ([]string, error) {
	if target == "" {
		return nil, nil
	}
	names := c.names()
	for _, n := range names {
		if n == target {
			return []string{target}, nil
		}
	}
	return nil, c.usageError(cmd, "unknown target %q; targets: %s", target, strings.Join(names, ", "))
}

// unreadable explains why a target could not be read; when nothing is
// configured at all, how to configure pgkill comes first.
func (c *CLI) unreadable(err error) string {
	msg := cause(err)
	if c.Opts.Unconfigured {
		msg = "no target is configured (set PGKILL_TARGETS or DATABASE_URL, or the libpq PG* variables), and libpq's default server could not be read: " + msg
	}
	return msg
}

// cause is an error as the user sees it after a line that already names
// the target and pid: PostgreSQL's or pgkill's own words (the innermost
// *pg.Error) without the operation around them, on one line.
func cause(err error) string {
	var e *pg.Error
	if errors.As(err, &e) {
		return errText(e)
	}
	return errText(err)
}

// errText is an error as the user sees it, on one line: passwords masked,
// whitespace folded (pgx puts one attempt per line), control characters
// visible.
func errText(err error) string { return lineText(err.Error()) }

// lineText is errText of an error's text.
func lineText(s string) string {
	return Visible(strings.Join(strings.Fields(pg.Redact(s)), " "))
}
