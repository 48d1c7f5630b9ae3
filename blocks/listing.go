package blocks

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/pg"
)

// MaxListed is the most backends one listing message shows: each takes two
// blocks and a message holds 50.
const MaxListed = 20

// Listing is a /pgkill answer.
type Listing struct {
	Targets   []string // the targets asked, in order
	Threshold time.Duration
	Filters   string // the filters as the user gave them, e.g. "db=app user=etl"
	Args      string // the /pgkill arguments, for Refresh
	Limit     int    // most backends to show; 0 or over MaxListed means MaxListed
	Results   []pg.Listing
	Now       time.Time
	Withheld  []string // why targets the user asked for are not shown here (mrkdwn)
	BulkSet   string   // the set the bot kept of the signallable backends matched, for Cancel all / Terminate all
	BulkCount int      // how many it holds
	// Roles are the targets' replication roles (writer, reader, replica) as
	// the fleet knows them when the message is built; nil shows none.
	Roles map[string]string
}

// ListingMessage renders a listing: a summary, a line per target that could
// not be read, each backend with its buttons (or why it has none), and a
// Refresh button. Root blockers come first: ending one frees the others.
func ListingMessage(l Listing) Message {
	all := pg.Merge(l.Results)
	root := func(b pg.Backend) bool { return b.RootBlocker() || b.LikelyRoot }
	sort.SliceStable(all, func(i, j int) bool { return root(all[i]) && !root(all[j]) })
	limit := l.Limit
	if limit <= 0 || limit > MaxListed {
		limit = MaxListed
	}
	shown := all
	if len(shown) > limit {
		shown = shown[:limit]
	}

	// Slack rejects a message by its total text long before any block is
	// full: the queries get what the budget leaves, and when even short
	// queries do not fit, fewer backends are shown.
	for {
		m, ok := fit(1800, func(qmax int) Message { return listing(l, all, shown, qmax) })
		if ok || len(shown) <= 1 {
			return m
		}
		shown = shown[:len(shown)*3/4]
	}
}

// listing renders one try at a listing message with queries cut to qmax.
func listing(l Listing, all, shown []pg.Backend, qmax int) Message {
	var bs []slack.Block
	bs = append(bs, header(fmt.Sprintf("Long-running queries ≥ %s", Duration(l.Threshold))))
	summary := fmt.Sprintf("*%d found* on %s", len(all), Truncate(targetNames(l.Targets, l.Roles), 600))
	if l.Filters != "" {
		summary += " · filters: " + inline(Truncate(l.Filters, 300))
	}
	if len(shown) < len(all) {
		summary += fmt.Sprintf(" · showing the %d longest of %d", len(shown), len(all))
	}
	summary += " · as of " + slackDate(l.Now)
	bs = append(bs, section("summary", summary))

	var failed []string
	for _, r := range l.Results {
		if r.Err != nil {
			failed = append(failed, fmt.Sprintf(":warning: *%s* could not be read: %s", Escape(r.Target), escapeTruncate(r.Err.Error(), 400)))
		}
	}
	if len(failed) > 0 {
		bs = append(bs, section("errors", Truncate(strings.Join(failed, "\n"), maxErrors)))
	}
	if len(l.Withheld) > 0 {
		bs = append(bs, contextLine("withheld", ":lock: Not shown here: "+strings.Join(l.Withheld, " ")))
	}
	if notes := listingNotes(l.Results); notes != "" {
		bs = append(bs, contextLine("notes", notes))
	}
	if len(all) == 0 {
		bs = append(bs, section("none", emptyText(l, len(failed))))
	}
	for i, b := range shown {
		bs = append(bs, section(fmt.Sprintf("b%d", i), backendText(b, l.Roles[b.Target], qmax)))
		bs = append(bs, backendActions(fmt.Sprintf("a%d", i), b))
	}
	if l.BulkSet != "" {
		bs = append(bs, contextLine("bulk", fmt.Sprintf("*Cancel all* / *Terminate all* act on the %d sessions this listing matched (not only those shown), each checked against its listed statement, after approval.", l.BulkCount)))
		bs = append(bs, BulkButtons("bulk-actions", l.BulkSet, l.BulkCount))
	}
	bs = append(bs, slack.NewActionBlock("refresh", button(ActionRefresh, "Refresh", Truncate(l.Args, MaxValue), "")))

	text := fmt.Sprintf("pgkill: %d long-running queries (≥ %s) on %s", len(all), Duration(l.Threshold), strings.Join(l.Targets, ", "))
	if len(failed) > 0 {
		text += fmt.Sprintf("; %s could not be read", plural(len(failed), "target", "targets"))
	}
	return revise(Message{Text: text, Blocks: bs}, l.Now, "")
}

// listingNotes says what a listing could not see: sessions of other roles
// hidden from pgkill's role, and targets listed without their blocking tree.
func listingNotes(rs []pg.Listing) string {
	var notes []string
	for _, r := range rs {
		if r.Err != nil {
			continue
		}
		if r.Hidden > 0 {
			notes = append(notes, fmt.Sprintf(":see_no_evil: *%s*: %s of other roles are hidden from pgkill's role (not listed, whatever their age): `GRANT pg_read_all_stats TO <pgkill role>`; see `doctor`.", Escape(r.Target), plural(r.Hidden, "session", "sessions")))
		}
		switch {
		case r.Degraded:
			notes = append(notes, fmt.Sprintf(":hourglass_flowing_sand: *%s*: %s. Every session is listed with its state and wait, and the likely root blocker is marked; this listing is updated in place when the lock table answers. Terminate works from here.", Escape(r.Target), escapeTruncate(r.NoTree, 300)))
		case r.NoTree != "":
			notes = append(notes, fmt.Sprintf(":warning: *%s* is listed without its blocking tree: %s", Escape(r.Target), escapeTruncate(r.NoTree, 300)))
		}
	}
	return Truncate(strings.Join(notes, "\n"), 2000)
}

// emptyText is what an empty listing says: an all-clear only when every
// target answered and nothing was hidden, and always what was searched.
func emptyText(l Listing, failed int) string {
	searched := fmt.Sprintf("≥ %s on %s", Duration(l.Threshold), Truncate(targetList(l.Targets), 600))
	if l.Filters != "" {
		searched += " (" + inline(Truncate(l.Filters, 300)) + ")"
	}
	hidden := 0
	for _, r := range l.Results {
		if r.Err == nil {
			hidden += r.Hidden
		}
	}
	switch {
	case failed == len(l.Results):
		return ":x: *Nothing could be read*: no target answered (see above). This is not an all-clear."
	case failed > 0:
		return fmt.Sprintf(":warning: No queries %s among the targets that answered; %d could not be read (see above), so this is not an all-clear.", searched, failed)
	case hidden > 0:
		return fmt.Sprintf(":warning: No visible queries %s — but %s of other roles are hidden from pgkill (see above): not an all-clear.", searched, plural(hidden, "session", "sessions"))
	}
	return ":white_check_mark: No queries " + searched + "."
}

// maxErrors bounds the lines about targets that could not be read, so that
// a fleet that is down still leaves room for the backends.
const maxErrors = 1500

func targetList(ts []string) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, "*"+Escape(t)+"*")
	}
	return strings.Join(parts, ", ")
}

// backendText is everything a responder needs to decide about one backend.
func backendText(b pg.Backend, role string, queryMax int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "*pid %d* on %s / %s · :stopwatch: *%s* · %s", b.PID, targetName(b.Target, role), inline(b.Database), Duration(b.Duration), Escape(string(b.State)))
	if b.State.Idle() && b.XactAge > b.Duration {
		fmt.Fprintf(&sb, " (transaction open %s)", Duration(b.XactAge))
	}
	if b.WaitEventType != "" {
		fmt.Fprintf(&sb, " · waiting on %s", Escape(b.WaitEventType+"/"+b.WaitEvent))
	}
	fmt.Fprintf(&sb, "\nuser %s · app %s · client %s", inline(b.User), inline(b.Application), inline(b.Client))
	if b.Workers > 0 {
		fmt.Fprintf(&sb, " · %d parallel workers", b.Workers)
	}
	sb.WriteString("\n")
	sb.WriteString(blockingText(b))
	sb.WriteString(codeBlock(b.Query, queryMax))
	return sb.String()
}

// maxBlockedBy is how many blocking pids a backend names.
const maxBlockedBy = 5

// blockingText says who waits for whom; "" when nobody does.
func blockingText(b pg.Backend) string {
	var lines []string
	switch {
	case b.RootBlocker():
		lines = append(lines, ":rotating_light: *Root blocker*: "+blocksText(b)+" — ending it frees them")
	case b.LikelyRoot:
		lines = append(lines, ":rotating_light: *Likely root blocker* — a guess made without the lock table, which is busy: the oldest open transaction that wrote and waits on no lock")
	case b.Blocking > 0:
		lines = append(lines, ":link: "+blocksText(b))
	}
	var pids []string
	for i, p := range b.BlockedBy {
		if i == maxBlockedBy {
			pids = append(pids, fmt.Sprintf("%d more", len(b.BlockedBy)-i))
			break
		}
		if p == 0 {
			pids = append(pids, "a prepared transaction (no signal ends it: ROLLBACK PREPARED)")
		} else {
			pids = append(pids, fmt.Sprintf("pid %d", p))
		}
	}
	switch {
	case b.WaitsFor != nil && len(pids) > 0:
		lines = append(lines, ":hourglass: waits for "+lockText(*b.WaitsFor)+", blocked by "+strings.Join(pids, ", "))
	case len(pids) > 0:
		lines = append(lines, ":hourglass: blocked by "+strings.Join(pids, ", "))
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// backendActions offers Cancel and Terminate, or says why not. Cancel is not
// offered to an idle session: it would do nothing.
func backendActions(id string, b pg.Backend) slack.Block {
	if !b.Signallable() {
		return contextLine(id, ":lock: not offered: "+Escape(b.Protected))
	}
	var elems []slack.BlockElement
	if !b.State.Idle() {
		elems = append(elems, button(ActionCancel, "Cancel", EncodeSignal(Signal{Action: pg.Cancel, Identity: b.Identity}), ""))
	}
	elems = append(elems, button(ActionTerminate, "Terminate", EncodeSignal(Signal{Action: pg.Terminate, Identity: b.Identity}), slack.StyleDanger))
	return slack.NewActionBlock(id, elems...)
}
