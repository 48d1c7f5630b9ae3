package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// DefaultBulkMax is PGKILL_BULK_MAX's default: the most sessions one
// cancel|terminate without pids may signal.
const DefaultBulkMax = 1000

// bulk cancels or terminates every session the filters select, as the
// Slack bot's bulk requests do: it lists them (root blockers first), asks
// once, signals the whole set in one identity-checked statement per target,
// verifies them together, and prints one line per session and the counts.
// Exit codes: 0 every signalled session ended (members that finished by
// themselves before the signal are skipped, not a failure), 4 one still
// runs, 5 not confirmed or nothing signalled, 3 a target could not be read
// (then nothing is signalled at all), 1 an error.
func (c *CLI) bulk(ctx context.Context, action pg.Action, a signalArgs) error {
	cmd := string(action)
	state, err := parseState(a.state)
	if err != nil {
		return c.usageError(cmd, "%v", err)
	}
	names, err := c.targets(cmd, a.target)
	if err != nil {
		return err
	}
	min := c.Opts.MinDuration
	if a.min.set {
		min = a.min.d
	}
	q := query{targets: names, filter: pg.Filter{MinDuration: min, Database: string(a.db), User: string(a.user),
		Application: string(a.app), State: state, QueryMax: pg.DefaultQueryMax}}
	rctx, cancel := waiting(ctx, a.wait.or())
	ls := c.DB.List(rctx, names, q.filter)
	cancel()
	if !c.bulkReadable(action, ls) {
		return exit(ExitUnreadable)
	}
	members, left := bulkMembers(action, ls)
	what, filters := searched(q)
	on := answeredTargets(ls)
	if len(members) == 0 {
		fmt.Fprintf(c.Out, "no %s on %s%s that can be %sed%s; nothing signalled\n", what, on, filters, action, leftText(left))
		return exit(ExitNothingDone)
	}
	limit := c.Opts.BulkMax
	if limit <= 0 {
		limit = DefaultBulkMax
	}
	if len(members) > limit {
		fmt.Fprintf(c.Out, "%d sessions match, more than one %s may end (PGKILL_BULK_MAX=%d). Narrow it — -target, -db, -user, -app, a longer -min — or raise PGKILL_BULK_MAX. Nothing signalled.\n",
			len(members), cmd, limit)
		return exit(ExitNothingDone)
	}
	order(members)
	if err := writeTable(c.Out, members, false, c.Opts.Width); err != nil {
		fmt.Fprintf(c.Err, "%s: %s\n", cmd, errText(err))
		return exit(ExitError)
	}
	fmt.Fprintf(c.Out, "%s: %s on %s%s%s\n", plural(len(members), "session"), what, on, filters, leftText(left))
	if !a.yes && !c.confirm(fmt.Sprintf("%s these %s, each only if it still runs the statement listed? [y/N] ", action, plural(len(members), "session"))) {
		fmt.Fprintln(c.Out, "not confirmed; nothing signalled")
		return exit(ExitNothingDone)
	}
	_, results := c.signalAll(ctx, action, members)
	t := pg.Count(results)
	fmt.Fprintln(c.Out, tallyLine(t))
	if next := bulkNext(action, members, results); next != "" {
		fmt.Fprintln(c.Out, next)
	}
	return exit(bulkCode(t))
}

// bulkReadable prints what could not be read or seen; a set is signalled
// only when every target it reads answered, so that "all of app=A" is all.
func (c *CLI) bulkReadable(action pg.Action, ls []pg.Listing) bool {
	ok := true
	for _, l := range ls {
		if l.Err != nil {
			ok = false
			fmt.Fprintf(c.Out, "%s: COULD NOT BE READ: %s\n", l.Target, c.unreadable(l.Err))
		}
		if l.Hidden > 0 {
			fmt.Fprintf(c.Out, "%s: %s of other roles hidden from pgkill's role (it lacks pg_read_all_stats): they are not in the set and cannot be signalled; GRANT pg_read_all_stats TO pgkill's role, see pgkill doctor\n",
				l.Target, plural(l.Hidden, "session"))
		}
	}
	if !ok {
		fmt.Fprintf(c.Out, "nothing signalled: %s without pids needs every target it reads to answer; name the targets that do with -target\n", action)
	}
	return ok
}

// bulkMembers splits what the listings matched into the sessions action
// may signal and a count of the others, by why (as the Slack card says).
func bulkMembers(action pg.Action, ls []pg.Listing) ([]pg.Backend, map[string]int) {
	left := map[string]int{}
	var members []pg.Backend
	for _, b := range pg.Merge(ls) {
		switch {
		case !b.Signallable():
			left["not signallable ("+Visible(b.Protected)+")"]++
		case action == pg.Cancel && b.State.Idle():
			left["idle in a transaction (cancel does nothing there)"]++
		default:
			members = append(members, b)
		}
	}
	return members, left
}

func answeredTargets(ls []pg.Listing) string {
	var names []string
	for _, l := range ls {
		names = append(names, l.Target)
	}
	return strings.Join(names, ", ")
}

// leftText is "; left out: 2 idle in a transaction (…)", or "".
func leftText(left map[string]int) string {
	parts := blocks.LeftOut(left)
	if len(parts) == 0 {
		return ""
	}
	return "; left out: " + strings.Join(parts, ", ")
}

// tallyLine counts the outcomes as the Slack card does, explaining the
// counts that need it when they are not 0.
func tallyLine(t pg.Tally) string {
	skipped, failed := "", ""
	if t.Skipped > 0 {
		skipped = " (no longer running the listed statement: nothing sent)"
	}
	if t.Failed > 0 {
		failed = " (their target did not answer: the signal may or may not have been sent)"
	}
	s := fmt.Sprintf("ended %d, skipped %d%s, still running %d, denied by PostgreSQL %d, failed %d%s",
		t.Ended, t.Skipped, skipped, t.Running, t.Denied, t.Failed, failed)
	if t.Protected > 0 {
		s += fmt.Sprintf(", %d protected now, though not when listed (a protection rule matches them: nothing sent)", t.Protected)
	}
	if t.Unverified > 0 {
		s += fmt.Sprintf(", %d signalled but not watched to the end (pgkill could not read them after the signal: list again)", t.Unverified)
	}
	if t.MaybeNext > 0 {
		s += fmt.Sprintf(", %d over but had ended by themselves just before the signal, which may have reached their next statement", t.MaybeNext)
	}
	return s
}

// bulkNext is the next step for what is left, as commands: terminate the
// sessions a cancel left running (by pid: exactly those), or list again.
func bulkNext(action pg.Action, members []pg.Backend, results []pg.Attempt) string {
	still := pg.StillRunning(members, results)
	if len(still) == 0 {
		failed := map[string]bool{}
		var ts []string
		for i, r := range results {
			if r.Err != "" && !failed[members[i].Target] {
				failed[members[i].Target] = true
				ts = append(ts, members[i].Target)
			}
		}
		if len(ts) == 0 {
			return ""
		}
		return "next: see what still runs with pgkill list -target " + strings.Join(ts, ", pgkill list -target ")
	}
	if action == pg.Terminate {
		return "next: they may be in an uninterruptible section; list again in a moment (pgkill list -min 0s)"
	}
	byTarget := map[string][]string{}
	var ts []string
	for _, b := range still {
		if _, ok := byTarget[b.Target]; !ok {
			ts = append(ts, b.Target)
		}
		byTarget[b.Target] = append(byTarget[b.Target], fmt.Sprint(b.PID))
	}
	var cmds []string
	for _, t := range ts {
		cmds = append(cmds, fmt.Sprintf("pgkill terminate -target %s %s", t, strings.Join(byTarget[t], " ")))
	}
	return fmt.Sprintf("next: to end the %d still running: %s", len(still), strings.Join(cmds, "; "))
}

// bulkCode is the exit code of a bulk signal: an outcome that cannot be
// known first, then a session still running, then nothing sent at all.
func bulkCode(t pg.Tally) int {
	switch {
	case t.Failed > 0 || t.MaybeNext > 0 || t.Unverified > 0:
		return ExitError
	case t.Running > 0:
		return ExitStillRunning
	case t.Denied > 0 || t.Protected > 0 || t.Ended == 0:
		return ExitNothingDone
	}
	return ExitOK
}
