package bot

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// ErrFailed makes the command exit non-zero after it has said why.
var ErrFailed = errors.New("failed")

// CLI is pgkill's command-line face: the main job without Slack.
type CLI struct {
	PG  Postgres
	Cfg Config
	In  io.Reader // answers to the y/N question
	Out io.Writer
	Err io.Writer
}

// List prints the long-running backends of the chosen targets. It fails when
// a target could not be read, after printing what the others returned.
func (c *CLI) List(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(c.Err)
	target := fs.String("target", "", "only this target (default: all)")
	minDur := fs.Duration("min", c.Cfg.MinDuration, "shortest duration listed")
	db := fs.String("db", "", "only this database")
	user := fs.String("user", "", "only this user")
	app := fs.String("app", "", "only this application_name")
	state := fs.String("state", "all", "active, idle-in-transaction or all")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return ErrFailed
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.Err, "list: unexpected argument %q\n", fs.Arg(0))
		return ErrFailed
	}
	st, err := pg.ParseFilterState(*state)
	if err != nil {
		fmt.Fprintf(c.Err, "list: %v\n", err)
		return ErrFailed
	}
	names, err := c.only(*target)
	if err != nil {
		return err
	}
	ls := c.PG.List(ctx, names, pg.Filter{MinDuration: *minDur, Database: *db, User: *user, Application: *app, State: st})
	if *asJSON {
		err = writeJSON(c.Out, ls)
	} else {
		err = writeTable(c.Out, ls)
	}
	if err != nil {
		return err
	}
	for _, l := range ls {
		if l.Err != nil {
			fmt.Fprintf(c.Err, "%s: %v\n", l.Target, l.Err)
			err = ErrFailed
		}
	}
	return err
}

// only turns a -target flag into the target list: empty means all.
func (c *CLI) only(target string) ([]string, error) {
	if target == "" {
		return nil, nil
	}
	if err := c.checkTarget(target); err != nil {
		return nil, err
	}
	return []string{target}, nil
}

func (c *CLI) checkTarget(name string) error {
	for _, n := range c.PG.Names() {
		if n == name {
			return nil
		}
	}
	fmt.Fprintf(c.Err, "unknown target %q; targets: %s\n", name, strings.Join(c.PG.Names(), ", "))
	return ErrFailed
}

// Signal cancels or terminates one backend after showing it and asking, then
// verifies. It fails unless the query ended.
func (c *CLI) Signal(ctx context.Context, action pg.Action, args []string) error {
	fs := flag.NewFlagSet(string(action), flag.ContinueOnError)
	fs.SetOutput(c.Err)
	target := fs.String("target", "", "the target (may be left out when there is one)")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	usage := fmt.Sprintf("usage: pgkill %s [-target T] [-yes] PID", action)
	// Flags may come before or after the pid.
	if err := fs.Parse(args); err != nil {
		return ErrFailed
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(c.Err, usage)
		return ErrFailed
	}
	pidArg := rest[0]
	if err := fs.Parse(rest[1:]); err != nil {
		return ErrFailed
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.Err, "%s: unexpected argument %q\n%s\n", action, fs.Arg(0), usage)
		return ErrFailed
	}
	pid, err := strconv.ParseInt(pidArg, 10, 32)
	if err != nil || pid <= 0 {
		fmt.Fprintf(c.Err, "%s: %q is not a pid\n%s\n", action, pidArg, usage)
		return ErrFailed
	}
	if *target == "" {
		names := c.PG.Names()
		if len(names) != 1 {
			fmt.Fprintf(c.Err, "%s: there are %d targets, say which with -target (%s)\n", action, len(names), strings.Join(names, ", "))
			return ErrFailed
		}
		*target = names[0]
	} else if err := c.checkTarget(*target); err != nil {
		return err
	}

	b, err := c.PG.Backend(ctx, *target, int32(pid))
	if errors.Is(err, pg.ErrNotFound) {
		fmt.Fprintf(c.Err, "no client backend with pid %d on %s (it may have ended); nothing signalled\n", pid, *target)
		return ErrFailed
	}
	if err != nil {
		fmt.Fprintf(c.Err, "%v; nothing signalled\n", err)
		return ErrFailed
	}
	fmt.Fprintf(c.Out, "%s pid %d on %s: %s\n", strings.ToUpper(string(action)), b.PID, b.Target, describe(b))
	fmt.Fprintf(c.Out, "  query: %s\n", blocks.OneLine(b.Query, 200))
	if !b.Signallable() {
		fmt.Fprintf(c.Err, "refused: %s; nothing signalled\n", b.Protected)
		return ErrFailed
	}
	if action == pg.Cancel && b.State != pg.StateActive {
		fmt.Fprintf(c.Err, "refused: cancel does nothing to a session that is %s (only a running statement can be cancelled); use terminate\n", b.State)
		return ErrFailed
	}
	if !*yes && !c.confirm(fmt.Sprintf("%s this backend? [y/N] ", action)) {
		fmt.Fprintln(c.Out, "not confirmed; nothing signalled")
		return ErrFailed
	}
	out, err := c.PG.Signal(ctx, action, b.Identity)
	if err != nil {
		fmt.Fprintf(c.Err, "%v\n", err)
		return ErrFailed
	}
	switch out.Result {
	case pg.Gone:
		fmt.Fprintln(c.Out, "nothing signalled: that query is no longer running (it finished, or the session moved on)")
		return ErrFailed
	case pg.ServerChanged:
		fmt.Fprintln(c.Out, "nothing signalled: the server restarted or failed over since the backend was read")
		return ErrFailed
	case pg.Denied:
		fmt.Fprintf(c.Out, "permission denied: %s\nfix: %s\n", out.Message, out.Fix)
		return ErrFailed
	}
	fmt.Fprintf(c.Out, "signal sent; waiting up to %s for it to end…\n", blocks.Duration(c.Cfg.VerifyTimeout))
	v, err := c.PG.Verify(ctx, out, c.Cfg.VerifyTimeout)
	if err != nil {
		fmt.Fprintf(c.Err, "%v\n", err)
		return ErrFailed
	}
	if v.Ended {
		fmt.Fprintf(c.Out, "ended: %s after %s\n", v.How, blocks.Duration(v.After))
		if v.AbortedTxOpen {
			fmt.Fprintln(c.Out, pg.WhyStillRunning(action, v))
		}
		return nil
	}
	fmt.Fprintf(c.Out, "still running after %s (state %s, waiting on %s)\n%s\n", blocks.Duration(v.After), v.State, waitEvent(v.WaitEventType, v.WaitEvent), pg.WhyStillRunning(action, v))
	return ErrFailed
}

// confirm asks a y/N question; anything but yes (EOF, no terminal) is no.
func (c *CLI) confirm(question string) bool {
	fmt.Fprint(c.Out, question)
	line, _ := bufio.NewReader(c.In).ReadString('\n')
	fmt.Fprintln(c.Out)
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// Doctor prints what each target lets pgkill do, and the timeouts to review.
func (c *CLI) Doctor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(c.Err)
	target := fs.String("target", "", "only this target (default: all)")
	if err := fs.Parse(args); err != nil {
		return ErrFailed
	}
	names, err := c.only(*target)
	if err != nil {
		return err
	}
	var failed error
	for _, r := range c.PG.Doctor(ctx, names) {
		writeReport(c.Out, r)
		if r.Err != nil {
			failed = ErrFailed
		}
	}
	return failed
}

func writeJSON(w io.Writer, ls []pg.Listing) error {
	type jsonTarget struct {
		Target string `json:"target"`
		Error  string `json:"error,omitempty"`
	}
	type jsonBackend struct {
		pg.Backend
		DurationSeconds float64 `json:"duration_seconds"`
		RootBlocker     bool    `json:"root_blocker"`
	}
	out := struct {
		Targets  []jsonTarget  `json:"targets"`
		Backends []jsonBackend `json:"backends"`
	}{Targets: []jsonTarget{}, Backends: []jsonBackend{}}
	for _, l := range ls {
		t := jsonTarget{Target: l.Target}
		if l.Err != nil {
			t.Error = l.Err.Error()
		}
		out.Targets = append(out.Targets, t)
	}
	for _, b := range pg.Merge(ls) {
		out.Backends = append(out.Backends, jsonBackend{Backend: b, DurationSeconds: b.Duration.Seconds(), RootBlocker: b.RootBlocker()})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
