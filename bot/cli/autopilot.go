package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/pg"
)

func autopilotFlags(target *string, wait *waitFlag) *flag.FlagSet {
	return targetFlags("autopilot test", "only the target `name` (default: every target a rule covers)", target, wait)
}

// Autopilot runs `pgkill autopilot test`: it evaluates the policy file's
// rules against the live servers now, with the blocking tree, and prints
// per rule what it would do and why. It signals nothing and reads no
// state store (pauses and breakers: /pgkill autopilot). Exit codes: 0
// evaluated, 1 no rule is declared, 3 a target could not be read.
func (c *CLI) Autopilot(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "test" {
		return c.usageError("autopilot", "the one subcommand is test")
	}
	var (
		target string
		wait   waitFlag
	)
	fs := autopilotFlags(&target, &wait)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[1:]); err != nil {
		return c.usageError("autopilot", "%v", err)
	}
	if fs.NArg() > 0 {
		return c.usageError("autopilot", "unexpected argument %q", fs.Arg(0))
	}
	rules := c.Opts.Rules
	if len(rules) == 0 {
		fmt.Fprintln(c.Out, "No autopilot rule is declared: PGKILL_POLICY_FILE's autopilot: section (docs/autopilot.md).")
		return exit(ExitError)
	}
	names, err := c.targets("autopilot", target)
	if err != nil {
		return err
	}
	if names == nil {
		names = c.names()
	}
	code := ExitOK
	rctx, cancel := waiting(ctx, wait.or())
	defer cancel()
	firings := map[string][]autopilot.Firing{}
	var read []string
	for _, name := range names {
		min, any := autopilot.Threshold(rules, name)
		if !any {
			continue
		}
		ls := c.DB.List(rctx, []string{name}, pg.Filter{MinDuration: min, QueryMax: pg.DefaultQueryMax})
		full, late := c.complete(rctx, ls)
		l := full[0]
		switch {
		case l.Err != nil:
			fmt.Fprintf(c.Out, "%s: could not be read, so no rule was evaluated there: %s\n", name, cause(l.Err))
			code = worse(code, ExitUnreadable)
			continue
		case len(late) > 0:
			fmt.Fprintf(c.Out, "%s: the blocking tree did not come within %s (%s): rules on blocking are not evaluated there\n", name, blocks.Typed(wait.or()), cause(late[0].Err))
			code = worse(code, ExitUnreadable)
		}
		read = append(read, name)
		for _, f := range autopilot.Evaluate(rules, l) {
			firings[f.Rule.Name] = append(firings[f.Rule.Name], f)
		}
	}
	for _, r := range rules {
		c.printRule(r, firings[r.Name], read)
	}
	fmt.Fprintln(c.Out, "\nNothing was signalled. A rule fires once per statement; pauses and breakers (in the state store) are not read here: /pgkill autopilot shows them.")
	return exit(code)
}

func (c *CLI) printRule(r autopilot.Rule, fs []autopilot.Firing, read []string) {
	fmt.Fprintf(c.Out, "\n%s\n", Visible(blocks.DescribeRule(r)))
	var on []string
	for _, t := range read {
		if r.AppliesTo(t) {
			on = append(on, t)
		}
	}
	if len(fs) == 0 {
		where := strings.Join(on, ", ")
		if where == "" {
			where = "no target that could be read"
		}
		fmt.Fprintf(c.Out, "  matches nothing now (on %s)\n", where)
		return
	}
	verb := "would " + string(r.Action.First())
	if r.Mode == autopilot.DryRun {
		verb = "dry run: would post that it would " + string(r.Action.First())
	}
	for _, f := range fs {
		b := f.Backend
		fmt.Fprintf(c.Out, "  %s pid %d on %s in %s (user %s, app %s, db %s): %s\n    %s\n", verb, b.PID, Visible(b.Target), blocks.Typed(r.Countdown),
			cell(b.User), cell(b.Application), cell(b.Database), Visible(blocks.AutoWhy(r, b)), oneLine(b.Query, 200))
	}
}
