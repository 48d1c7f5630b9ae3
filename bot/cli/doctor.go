package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/pgkill/pgkill/pg"
)

func doctorFlags(target *string, wait *waitFlag) *flag.FlagSet {
	return targetFlags("doctor", "only the target `name` (default: all)", target, wait)
}

// targetFlags are the flags of a command that reads each target once:
// -target and -wait.
func targetFlags(name, targetUsage string, target *string, wait *waitFlag) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(target, "target", "", targetUsage)
	fs.Var(wait, "wait", waitUsage)
	return fs
}

// Doctor prints what each target lets pgkill do, and the timeouts to review.
// Exit codes: 0 all well, 1 a grant pgkill needs is missing, 3 a target
// could not be read.
func (c *CLI) Doctor(ctx context.Context, args []string) error {
	var (
		target string
		wait   waitFlag
	)
	fs := doctorFlags(&target, &wait)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return c.usageError("doctor", "%v", err)
	}
	if fs.NArg() > 0 {
		return c.usageError("doctor", "unexpected argument %q", fs.Arg(0))
	}
	names, err := c.targets("doctor", target)
	if err != nil {
		return err
	}
	code := ExitOK
	rctx, cancel := waiting(ctx, wait.or())
	reports := c.DB.Doctor(rctx, names)
	cancel()
	specs := c.DB.Specs() // after doctor: a target discovered meanwhile has its spec
	for _, r := range reports {
		c.writeReport(r, specs)
		switch {
		case r.Err != nil:
			code = worse(code, ExitUnreadable)
		case len(r.Missing) > 0:
			code = worse(code, ExitError)
		}
	}
	return exit(code)
}

func (c *CLI) writeReport(r pg.Report, specs []pg.TargetSpec) {
	w := c.Out
	fmt.Fprintf(w, "== %s\n", r.Target)
	fmt.Fprintf(w, "  target: %s\n", c.whereFrom(specs, r.Target))
	if r.Auth != "" {
		fmt.Fprintf(w, "  login: %s (%s)\n", Visible(r.Auth), loginWorks(r.Err))
	}
	if r.Err != nil {
		fmt.Fprintf(w, "  COULD NOT BE READ: %s\n\n", c.unreadable(r.Err))
		return
	}
	fmt.Fprintf(w, "  server: PostgreSQL %s\n", Visible(r.Version))
	fmt.Fprintf(w, "  role %s: superuser=%v rds_superuser=%v pg_signal_backend=%v pg_read_all_stats=%v\n",
		Visible(r.User), r.Superuser, r.RDSSuperuser, r.SignalBackend, r.ReadAllStats)
	for _, m := range r.Missing {
		fmt.Fprintf(w, "  MISSING: %s\n", Visible(m))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  ! %s\n", Visible(p))
	}
	for _, s := range r.Settings {
		line := fmt.Sprintf("  %s = %s", s.Name, Visible(s.Value))
		if s.Advice != "" {
			line += "  -> " + s.Advice
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)
}

// whereFrom says where a target came from and its replication role.
func (c *CLI) whereFrom(specs []pg.TargetSpec, name string) string {
	for _, s := range specs {
		if s.Name != name {
			continue
		}
		from := "configured"
		switch {
		case s.Origin != "":
			from = "discovered: " + Visible(s.Origin)
		case c.Opts.Unconfigured:
			from = "not configured: libpq's default server (set PGKILL_TARGETS or DATABASE_URL)"
		case c.Opts.TargetsFrom != "":
			from += " (" + c.Opts.TargetsFrom + ")"
		}
		if s.Role != "" {
			from += ", role " + Visible(s.Role)
		}
		return from
	}
	return "no longer in the fleet"
}

// loginWorks says whether the login worked, as far as err tells: a server
// that could not be reached says nothing about it.
func loginWorks(err error) string {
	switch {
	case err == nil:
		return "works"
	case errors.Is(err, pg.ErrAuth):
		return "REFUSED"
	}
	return "not known to work: the server could not be reached"
}
