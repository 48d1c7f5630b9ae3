package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

type signalArgs struct {
	target string
	yes    bool
	redact bool
	// With no pid, the filters select the set (bulk.go).
	min           minFlag
	db, user, app patternFlag
	state         string
	pids          []int32
	filters       []string // the selecting flags given, as -name
	wait          waitFlag
}

func signalFlags(name string, a *signalArgs) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&a.target, "target", "", "the target `name` the pids are on (may be left out when there is one); with no pid, only this target's sessions")
	fs.BoolVar(&a.yes, "yes", false, "do not ask for confirmation")
	fs.BoolVar(&a.yes, "y", false, "short for -yes")
	fs.BoolVar(&a.redact, "redact", false, "hide query literals and comments, as in Slack (PGKILL_REDACT=literals)")
	fs.Var(&a.min, "min", "with no pid: shortest `duration` included, with a unit: 30s, 5m; 0s includes all (default: PGKILL_MIN_DURATION, 1m)")
	fs.Var(&a.db, "db", "with no pid: only databases matching this shell `pattern` (*, ?, [a-z])")
	fs.Var(&a.user, "user", "with no pid: only users matching this shell `pattern`")
	fs.Var(&a.app, "app", "with no pid: only application_names matching this shell `pattern`")
	fs.StringVar(&a.state, "state", "", "with no pid: `state`: "+stateHelp())
	fs.Var(&a.wait, "wait", waitUsage)
	return fs
}

// Signal cancels or terminates each pid in args: it reads and shows each
// session, refuses what must not or need not be signalled, asks once, then
// signals each still-matching session and watches it. One line per pid says
// how it ended. Exit codes: 0 every pid ended, 4 one still runs, 5 not
// confirmed or one was not signalled, 3 a target could not be read, 1 an
// error; with several pids, the first of 1, 3, 4, 5 that applies. With
// filters and no pid it acts on the set they select (Bulk).
func (c *CLI) Signal(ctx context.Context, action pg.Action, args []string) error {
	cmd := string(action)
	a, err := c.signalArgs(cmd, args)
	if err != nil {
		return err
	}
	if a.redact {
		c = c.redacting()
	}
	if len(a.pids) == 0 {
		return c.bulk(ctx, action, a)
	}
	code := ExitOK
	var todo []pg.Backend
	rctx, cancel := waiting(ctx, a.wait.or())
	defer cancel()
	for _, pid := range a.pids {
		b, cd := c.read(rctx, action, a.target, pid)
		code = worse(code, cd)
		if cd == ExitOK {
			todo = append(todo, b)
		}
	}
	if len(todo) == 0 {
		return exit(code)
	}
	if !a.yes && !c.confirm(question(action, todo)) {
		fmt.Fprintln(c.Out, "not confirmed; nothing signalled")
		return exit(worse(code, ExitNothingDone))
	}
	cd, _ := c.signalAll(ctx, action, todo)
	return exit(worse(code, cd))
}

// signalArgs parses [-target T] [-y] PID... with flags before or after the
// pids, and resolves the target; or, with no pid, the filters that select a
// set, at least one of them required.
func (c *CLI) signalArgs(cmd string, args []string) (signalArgs, error) {
	var a signalArgs
	fs := signalFlags(cmd, &a)
	fs.SetOutput(io.Discard)
	seen := map[int32]bool{}
	for {
		if err := fs.Parse(args); err != nil {
			return a, c.usageError(cmd, "%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		arg := fs.Arg(0)
		pid, err := strconv.ParseInt(arg, 10, 32)
		if err != nil || pid <= 0 {
			return a, c.usageError(cmd, "%q is not a pid", arg)
		}
		if !seen[int32(pid)] {
			seen[int32(pid)] = true
			a.pids = append(a.pids, int32(pid))
		}
		args = fs.Args()[1:]
	}
	var filters []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "min", "db", "user", "app", "state":
			filters = append(filters, "-"+f.Name)
		case "target":
			a.filters = append(a.filters, "-target")
		}
	})
	a.filters = append(a.filters, filters...)
	if len(a.pids) == 0 {
		if len(a.filters) == 0 || (len(a.filters) == 1 && a.filters[0] == "-min") {
			return a, c.usageError(cmd, "which sessions? Give pids (pgkill list shows them), or select a set with -target, -db, -user, -app or -state (and -min): pgkill does not %s every session of every target", cmd)
		}
		return a, nil
	}
	if len(filters) > 0 {
		return a, c.usageError(cmd, "%s selects sessions by filter and cannot be combined with pids: give pids, or filters and no pid", strings.Join(filters, ", "))
	}
	if a.target != "" {
		_, err := c.targets(cmd, a.target)
		return a, err
	}
	names := c.names()
	if len(names) != 1 {
		return a, c.usageError(cmd, "there are %d targets, say which with -target (%s)", len(names), strings.Join(names, ", "))
	}
	a.target = names[0]
	return a, nil
}

// read reads one pid, shows it and decides whether it may be signalled:
// ExitOK when it may, else the code of the refusal, already explained. A
// target that could not be read is exit 3, whatever the reason, as in list.
func (c *CLI) read(ctx context.Context, action pg.Action, target string, pid int32) (pg.Backend, int) {
	b, err := c.DB.Backend(ctx, target, pid)
	switch {
	case errors.Is(err, pg.ErrHidden):
		// pg's error names both roles and the GRANT that fixes it.
		fmt.Fprintf(c.Out, "%s; nothing signalled (see pgkill doctor)\n", errText(err))
		return b, ExitNothingDone
	case errors.Is(err, pg.ErrNotFound):
		fmt.Fprintf(c.Out, "pid %d on %s: no client backend with that pid (it has ended, or never existed); nothing signalled\n", pid, target)
		return b, ExitNothingDone
	case err != nil:
		fmt.Fprintf(c.Out, "pid %d on %s: COULD NOT BE READ: %s; nothing signalled\n", pid, target, c.unreadable(err))
		return b, ExitUnreadable
	}
	c.show(action, b)
	if why := refusal(action, b); why != "" {
		fmt.Fprintf(c.Out, "  pid %d: %s; nothing signalled\n", b.PID, why)
		return b, ExitNothingDone
	}
	return b, ExitOK
}

// show prints what the confirmation is about: the session, its query, what
// it blocks and, for terminate, the transaction that would be rolled back.
func (c *CLI) show(action pg.Action, b pg.Backend) {
	fmt.Fprintf(c.Out, "%s pid %d on %s: %s\n", strings.ToUpper(string(action)), b.PID, b.Target, describe(b))
	fmt.Fprintf(c.Out, "  query: %s\n", oneLine(b.Query, 200))
	if b.BlockingTotal > 0 {
		them := "them"
		if b.BlockingTotal == 1 {
			them = "it"
		}
		fmt.Fprintf(c.Out, "  blocks %s (%d directly): ending it frees %s\n", plural(b.BlockingTotal, "session"), b.Blocking, them)
	}
	if len(b.Queue) > 0 {
		fmt.Fprintf(c.Out, "  its waiters want: %s\n", queueText(b.Queue))
	}
	if b.LikelyRoot {
		fmt.Fprintln(c.Out, "  likely the root blocker: the lock table is busy (a lock pile-up), so what it blocks is not known; it is the oldest transaction that waits on no lock")
	}
	if len(b.BlockedBy) > 0 {
		fmt.Fprintf(c.Out, "  waits on pid %s%s\n", pids(b.BlockedBy), wantText(b.WaitsFor))
	}
	if b.XactStart.IsZero() || b.State == "idle" || !b.Signallable() {
		return
	}
	age := blocks.Duration(txAge(b, time.Now()))
	switch {
	case action == pg.Terminate:
		fmt.Fprintf(c.Out, "  its open transaction (open for %s) is rolled back: its uncommitted changes are lost\n", age)
	case b.State == pg.StateActive && b.XactStart.Before(b.QueryStart):
		// A transaction that began before the statement is an explicit
		// block: cancelling the statement leaves it open, aborted.
		fmt.Fprintf(c.Out, "  it runs inside a transaction open for %s: cancel ends the statement, and the transaction stays open (aborted) until the client rolls back\n", age)
	}
}

// refusal says why b is not signalled with action, or "" when it may be.
// The same session gets the same story from cancel and terminate, and no
// next step is offered that would be refused.
func refusal(action pg.Action, b pg.Backend) string {
	switch {
	case !b.Signallable():
		return "refused: " + Visible(b.Protected)
	case b.State == "idle":
		return "nothing to end: it is idle (no statement running, no transaction open); pgkill spares plain idle sessions on purpose"
	case action == pg.Cancel && b.State.Idle():
		return fmt.Sprintf("cancel does nothing to a session %s (no statement is running); ending its transaction needs: %s",
			b.State, nextCommand(pg.Terminate, b))
	case action == pg.Cancel && b.State != pg.StateActive:
		return fmt.Sprintf("cancel acts only on a running statement; this session is %s", Visible(string(b.State)))
	}
	return ""
}

// nextCommand is the command line for the next step.
func nextCommand(action pg.Action, b pg.Backend) string {
	return fmt.Sprintf("pgkill %s -target %s %d", action, b.Target, b.PID)
}

func question(action pg.Action, bs []pg.Backend) string {
	if len(bs) == 1 {
		return fmt.Sprintf("%s pid %d on %s? [y/N] ", action, bs[0].PID, bs[0].Target)
	}
	var ps []string
	for _, b := range bs {
		ps = append(ps, fmt.Sprint(b.PID))
	}
	return fmt.Sprintf("%s these %d sessions on %s (pids %s)? [y/N] ", action, len(bs), bs[0].Target, strings.Join(ps, ", "))
}

// signalAll signals the backends (one identity-checked statement per
// target), then watches those signalled together, so several pids take one
// verify timeout, not one each. It prints one line per pid, in the order
// given, and returns the exit code and each backend's attempt.
func (c *CLI) signalAll(ctx context.Context, action pg.Action, bs []pg.Backend) (int, []pg.Attempt) {
	ids := make([]pg.Identity, len(bs))
	for i, b := range bs {
		ids[i] = b.Identity
	}
	fmt.Fprintf(c.Out, "signalling %s; each one signalled is watched for up to %s (PGKILL_VERIFY_TIMEOUT)…\n",
		plural(len(bs), "session"), blocks.Duration(c.Opts.VerifyTimeout))
	atts := c.DB.SignalVerify(ctx, action, ids, c.Opts.VerifyTimeout)
	code := ExitOK
	for i, b := range bs {
		line, cd := attemptLine(action, b, atts[i])
		fmt.Fprintln(c.Out, line)
		code = worse(code, cd)
	}
	return code, atts
}
