package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

type listArgs struct {
	target        string
	min           minFlag
	db, user, app patternFlag
	state         string
	blocking      bool
	limit         int
	wide          bool
	watch         watchFlag
	json          bool
	redact        bool
	wait          waitFlag
}

func listFlags(a *listArgs) *flag.FlagSet {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.StringVar(&a.target, "target", "", "only the target `name` (default: all)")
	fs.Var(&a.min, "min", "shortest `duration` listed, with a unit: 30s, 5m; 0s lists all (default: PGKILL_MIN_DURATION, 1m)")
	fs.Var(&a.db, "db", "only databases matching this shell `pattern` (*, ?, [a-z])")
	fs.Var(&a.user, "user", "only users matching this shell `pattern`")
	fs.Var(&a.app, "app", "only application_names matching this shell `pattern`")
	fs.StringVar(&a.state, "state", "", "`state`: "+stateHelp())
	fs.BoolVar(&a.blocking, "blocking", false, "only sessions that block others or wait on a lock")
	fs.IntVar(&a.limit, "limit", 0, "show at most `N` sessions, root blockers and longest first (0: all)")
	fs.BoolVar(&a.wide, "wide", false, fmt.Sprintf("show the whole query, not its first %d characters", queryWidth))
	fs.Var(&a.watch, "watch", "list again every interval (-watch or -watch 5s; default 2s) until Ctrl-C, in place on a terminal")
	fs.BoolVar(&a.json, "json", false, "print JSON")
	fs.BoolVar(&a.redact, "redact", false, "hide query literals and comments, as in Slack (PGKILL_REDACT=literals)")
	fs.Var(&a.wait, "wait", waitUsage)
	return fs
}

// List prints the long-running sessions of the chosen targets. Exit codes:
// 0 when every target answered (whatever it listed), 2 on a usage error, 3
// when a target could not be read; with -watch, 0 on Ctrl-C. When a
// target's lock table is busy (a lock pile-up) it prints what it could read
// without the blocking tree, then waits (up to -wait) for the tree and
// prints the listing again with it; -watch prints each frame as it is.
func (c *CLI) List(ctx context.Context, args []string) error {
	a := listArgs{min: minFlag{d: c.Opts.MinDuration}}
	fs := listFlags(&a)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(joinWatch(args)); err != nil {
		return c.usageError("list", "%v", err)
	}
	if fs.NArg() > 0 {
		return c.usageError("list", "unexpected argument %q", fs.Arg(0))
	}
	if a.limit < 0 {
		return c.usageError("list", "-limit must be 0 (all) or more, not %d", a.limit)
	}
	state, err := parseState(a.state)
	if err != nil {
		return c.usageError("list", "%v", err)
	}
	names, err := c.targets("list", a.target)
	if err != nil {
		return err
	}
	if a.redact {
		c = c.redacting()
	}
	// The table shows 60 characters of each query: read no more than a
	// message would, except for -wide and -json, which show it whole.
	queryMax := pg.DefaultQueryMax
	if a.wide || a.json {
		queryMax = 0
	}
	q := query{
		targets: names,
		filter: pg.Filter{MinDuration: a.min.d, Database: string(a.db), User: string(a.user),
			Application: string(a.app), State: state, QueryMax: queryMax},
		blocking: a.blocking, limit: a.limit, wide: a.wide, json: a.json, wait: a.wait.or(),
	}
	if a.watch.every == 0 {
		return exit(c.listOnce(ctx, q))
	}
	q.watching = true
	return c.watch(ctx, q, a.watch.every)
}

// query is one listing as asked on the command line.
type query struct {
	targets  []string
	filter   pg.Filter
	blocking bool
	limit    int
	wide     bool
	json     bool
	wait     time.Duration // for a slow server (-wait)
	watching bool          // -watch: each frame as it is, never waiting for a tree
}

// listOnce lists and prints once, and returns the exit code. A listing
// without its tree (Degraded) is printed as it is, then again with the
// tree when it comes within q.wait.
func (c *CLI) listOnce(ctx context.Context, q query) int {
	ctx, cancel := waiting(ctx, q.wait)
	defer cancel()
	start := time.Now()
	ls := c.DB.List(ctx, q.targets, q.filter)
	code := c.printListing(ls, q)
	var busy []string
	for _, l := range ls {
		if l.Degraded {
			busy = append(busy, l.Target)
		}
	}
	if q.watching || len(busy) == 0 || code == ExitError {
		return code
	}
	fmt.Fprintf(c.Err, "pgkill: waiting for the blocking tree of %s: the lock table is busy (a lock pile-up's deadlock checks hold it); up to %s (-wait), Ctrl-C stops\n",
		strings.Join(busy, ", "), blocks.Typed(q.wait))
	full, late := c.complete(ctx, ls)
	for _, l := range late {
		fmt.Fprintf(c.Err, "pgkill: %s: the blocking tree did not come within %s: %s; the listing above is all pgkill could read\n", l.Target, blocks.Typed(q.wait), cause(l.Err))
	}
	if len(late) == len(busy) {
		return code
	}
	if !q.json {
		fmt.Fprintf(c.Out, "\n-- with the blocking tree, %s later:\n", seconds(time.Since(start)))
	}
	return c.printListing(full, q)
}

// complete brings the blocking tree to each Degraded listing, the targets
// concurrently, until ctx ends; late are the listings whose tree did not
// come (with the error), which stay as they were in full.
func (c *CLI) complete(ctx context.Context, ls []pg.Listing) (full, late []pg.Listing) {
	full = slices.Clone(ls)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, l := range ls {
		if !l.Degraded {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := l
			for got.Degraded && got.Err == nil {
				got = c.DB.Complete(ctx, got)
			}
			mu.Lock()
			defer mu.Unlock()
			if got.Err != nil {
				late = append(late, got)
				return
			}
			full[i] = got
		}()
	}
	wg.Wait()
	return full, late
}

// printListing prints ls as a table or JSON and returns the exit code.
func (c *CLI) printListing(ls []pg.Listing, q query) int {
	code := ExitOK
	for _, l := range ls {
		if l.Err != nil {
			code = ExitUnreadable
		}
	}
	var bs []pg.Backend
	for _, l := range ls {
		for _, b := range l.Backends {
			if !q.blocking || b.Blocking > 0 || len(b.BlockedBy) > 0 || b.LikelyRoot || (l.Degraded && b.WaitEventType == "Lock") {
				bs = append(bs, b)
			}
		}
	}
	order(bs)
	var err error
	if q.json {
		if q.limit > 0 && len(bs) > q.limit {
			bs = bs[:q.limit]
		}
		err = writeJSON(c.Out, ls, bs)
	} else {
		err = c.writeListing(ls, bs, q)
	}
	if err != nil {
		fmt.Fprintf(c.Err, "list: %s\n", errText(err))
		return ExitError
	}
	return code
}

// writeListing prints the table, then per target what could not be read or
// seen. "no queries" is said only when every target answered.
func (c *CLI) writeListing(ls []pg.Listing, bs []pg.Backend, q query) error {
	shown := bs
	if q.limit > 0 && len(shown) > q.limit {
		shown = shown[:q.limit]
	}
	if len(shown) > 0 {
		if err := writeTable(c.Out, shown, q.wide, c.Opts.Width); err != nil {
			return err
		}
		if n := len(bs) - len(shown); n > 0 {
			fmt.Fprintf(c.Out, "… and %d more (-limit 0 shows all)\n", n)
		}
	}
	var answered, failed, hidden []string
	for _, l := range ls {
		switch {
		case l.Err != nil:
			failed = append(failed, l.Target)
			fmt.Fprintf(c.Out, "%s: COULD NOT BE READ: %s\n", l.Target, c.unreadable(l.Err))
		default:
			answered = append(answered, l.Target)
		}
		if l.Hidden > 0 {
			hidden = append(hidden, l.Target)
			fmt.Fprintf(c.Out, "%s: %s of other roles hidden from pgkill's role (it lacks pg_read_all_stats): they are not listed and cannot be signalled; GRANT pg_read_all_stats TO pgkill's role, see pgkill doctor\n",
				l.Target, plural(l.Hidden, "session"))
		}
		if l.NoTree != "" {
			fmt.Fprintf(c.Out, "%s: listed without blocking counts: %s\n", l.Target, Visible(l.NoTree))
		}
		if likely(l) {
			fmt.Fprintf(c.Out, "%s: \"likely ROOT\" is a guess made without the lock table: the oldest transaction that waits on no lock, idle in it and holding rows if one is\n", l.Target)
		}
	}
	if len(bs) > 0 {
		return nil
	}
	what, filters := searched(q)
	switch {
	case len(answered) == 0:
		_, err := fmt.Fprintf(c.Out, "nothing could be listed: no target answered\n")
		return err
	case len(failed) > 0:
		_, err := fmt.Fprintf(c.Out, "no %s on %s%s; %s could not be read (see above)\n", what, strings.Join(answered, ", "), filters, strings.Join(failed, ", "))
		return err
	case len(hidden) > 0:
		_, err := fmt.Fprintf(c.Out, "no %s visible on %s%s; sessions hidden on %s (see above)\n", what, strings.Join(answered, ", "), filters, strings.Join(hidden, ", "))
		return err
	}
	_, err := fmt.Fprintf(c.Out, "no %s on %s%s\n", what, strings.Join(answered, ", "), filters)
	return err
}

// searched says what a listing looked for: "queries ≥ 1m" and its filters,
// " (db=orders)".
func searched(q query) (what, filters string) {
	what = "queries ≥ " + blocks.Typed(q.filter.MinDuration)
	if q.filter.MinDuration == 0 {
		what = "queries"
	}
	var f []string
	for _, kv := range []struct{ k, v string }{
		{"db", q.filter.Database}, {"user", q.filter.User}, {"app", q.filter.Application},
	} {
		if kv.v != "" {
			f = append(f, kv.k+"="+Visible(kv.v))
		}
	}
	if q.filter.State != "" && q.filter.State != "all" {
		f = append(f, "state="+q.filter.State)
	}
	if q.blocking {
		f = append(f, "blocking")
	}
	if len(f) > 0 {
		filters = " (" + strings.Join(f, ", ") + ")"
	}
	return what, filters
}

// watch lists every interval until ctx ends (Ctrl-C), which is a success:
// the user stopped it. On a terminal each listing replaces the last; into a
// pipe or file each is printed after a timestamped header.
func (c *CLI) watch(ctx context.Context, q query, every time.Duration) error {
	out := c.Out
	defer func() { c.Out = out }()
	for {
		// Each frame is rendered whole, then written at once: no flicker on
		// a terminal, and a frame cut short by Ctrl-C (its reads cancelled)
		// is never shown as targets that "could not be read".
		var frame bytes.Buffer
		if c.Opts.Terminal && !q.json {
			frame.WriteString("\x1b[H\x1b[2J") // home, clear screen
		}
		if !q.json { // with -json, one JSON document per listing and nothing else
			fmt.Fprintf(&frame, "-- %s, every %s (Ctrl-C stops)\n", time.Now().Format("15:04:05"), every)
		}
		c.Out = &frame
		code := c.listOnce(ctx, q)
		c.Out = out
		if ctx.Err() != nil {
			return nil
		}
		if _, err := out.Write(frame.Bytes()); err != nil || code == ExitError {
			return exit(ExitError)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}

// likely reports whether l marks a likely root.
func likely(l pg.Listing) bool {
	for _, b := range l.Backends {
		if b.LikelyRoot {
			return true
		}
	}
	return false
}
