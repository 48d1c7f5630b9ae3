package blocks

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/pg"
)

// Alert is one runaway query as its alert shows it.
type Alert struct {
	Backend pg.Backend
	Since   time.Time // when the alert was first posted
	Now     time.Time
	// Set once the query is gone from pg_stat_activity.
	Resolved bool
	RanFor   time.Duration
	EndedBy  string // e.g. "cancelled through request R3 approved by <@U1>"; "" = finished by itself
	// Role is the target's replication role when the message is built
	// (writer, reader, replica; "" for none): a failover changes it.
	Role string
}

// AlertMessage renders a runaway-query alert: what the listing shows, with
// Cancel and Terminate while it runs; resolved and without buttons after.
func AlertMessage(a Alert) Message {
	b := a.Backend
	kind := "Runaway query"
	if b.State.Idle() {
		kind = "Transaction idle too long"
	}
	if a.Resolved {
		how := "it finished by itself (or its client ended it)"
		if a.EndedBy != "" {
			how = a.EndedBy
		}
		text := fmt.Sprintf(":white_check_mark: *Resolved* — %s: pid %d on %s ran for at least *%s*; %s.",
			strings.ToLower(kind), b.PID, targetName(b.Target, a.Role), Duration(a.RanFor), how)
		return revise(Message{
			Text: fmt.Sprintf("pgkill: resolved: pid %d on %s ran for %s", b.PID, b.Target, Duration(a.RanFor)),
			Blocks: []slack.Block{
				section("alert", text+"\n"+codeBlock(b.Query, 800)),
				contextLine("when", fmt.Sprintf("Alerted %s · resolved %s", slackDate(a.Since), slackDate(a.Now))),
			},
		}, a.Now, "resolved")
	}
	return revise(Message{
		Text: fmt.Sprintf("pgkill: %s on %s: pid %d for %s", strings.ToLower(kind), b.Target, b.PID, Duration(b.Duration)),
		Blocks: []slack.Block{
			section("alert", fmt.Sprintf(":rotating_light: *%s* on %s\n%s", kind, targetName(b.Target, a.Role), backendText(b, a.Role, 1800))),
			backendActions("actions", b),
			contextLine("when", fmt.Sprintf("Alerted %s · updated %s · Cancel/Terminate need an approver", slackDate(a.Since), slackDate(a.Now))),
		},
	}, a.Now, "")
}

// Summary is a storm of runaway queries as one message shows them.
type Summary struct {
	Backends []pg.Backend
	Show     int // how many of the longest are shown with their own buttons
	// BulkSet names the frozen set of the queries counted, kept by the bot:
	// Cancel all / Terminate all BulkCount act on it. "" offers no such
	// buttons.
	BulkSet   string
	BulkCount int
	Now       time.Time
}

// AlertSummary replaces a storm of alerts: counts by target, user and
// application, the longest few with their buttons, and Cancel all /
// Terminate all for every query it counts.
func AlertSummary(s Summary) Message {
	sorted := append([]pg.Backend(nil), s.Backends...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Duration > sorted[j].Duration })
	count := func(key func(pg.Backend) string) string { return breakdown(sorted, key, 8) }
	show := min(s.Show, len(sorted), MaxListed)
	for {
		m, ok := fit(600, func(qmax int) Message { return alertSummary(sorted, show, count, qmax, s) })
		if ok || show <= 1 {
			return m
		}
		show = show * 3 / 4
	}
}

// alertSummary renders one try at a summary with queries cut to qmax.
func alertSummary(sorted []pg.Backend, show int, count func(func(pg.Backend) string) string, qmax int, s Summary) Message {
	bs := []slack.Block{
		header(fmt.Sprintf("%d runaway queries at once", len(sorted))),
		section("counts", fmt.Sprintf("*By target:* %s\n*By user:* %s\n*By application:* %s",
			count(func(b pg.Backend) string { return b.Target }),
			count(func(b pg.Backend) string { return b.User }),
			count(func(b pg.Backend) string { return b.Application }))),
	}
	if s.BulkSet != "" {
		bs = append(bs, BulkButtons("bulk-actions", s.BulkSet, s.BulkCount))
	}
	for i, b := range sorted[:show] {
		bs = append(bs, section(fmt.Sprintf("b%d", i), backendText(b, "", qmax)), backendActions(fmt.Sprintf("a%d", i), b))
	}
	all := "`/pgkill` lists them all"
	if s.BulkSet != "" {
		all = fmt.Sprintf("Cancel all / Terminate all ask for one approval for the %d that can be signalled, exactly those counted here", s.BulkCount)
	}
	bs = append(bs, contextLine("note", fmt.Sprintf("One summary instead of %d alerts · the %d longest shown · %s · %s", len(sorted), show, all, slackDate(s.Now))))
	return Message{Text: fmt.Sprintf("pgkill: %d runaway queries at once", len(sorted)), Blocks: bs}
}

// TargetDown says a target cannot be polled.
func TargetDown(target string, err error, now time.Time) Message {
	return Message{
		Text: fmt.Sprintf("pgkill: %s cannot be polled", target),
		Blocks: []slack.Block{section("down", fmt.Sprintf(":red_circle: *%s cannot be polled* since %s: %s\nAlerts for it are paused until it answers again.",
			Escape(target), slackDate(now), escapeTruncate(err.Error(), 800)))},
	}
}

// TargetUp says a target answers again.
func TargetUp(target string, downFor time.Duration, now time.Time) Message {
	return Message{
		Text: fmt.Sprintf("pgkill: %s answers again", target),
		Blocks: []slack.Block{section("up", fmt.Sprintf(":large_green_circle: *%s answers again* (%s) after %s; alerts resumed.",
			Escape(target), slackDate(now), Duration(downFor)))},
	}
}

// AlertSummaryResolved replaces a summary once all its queries have ended.
func AlertSummaryResolved(total int, since, now time.Time) Message {
	return revise(Message{
		Text: fmt.Sprintf("pgkill: resolved: all %d runaway queries have ended", total),
		Blocks: []slack.Block{
			section("resolved", fmt.Sprintf(":white_check_mark: *Resolved* — all %d runaway queries of this summary have ended.", total)),
			contextLine("when", fmt.Sprintf("Alerted %s · resolved %s", slackDate(since), slackDate(now))),
		},
	}, now, "resolved")
}

// PileUp is a lock pile-up on one target as its alert shows it.
type PileUp struct {
	Target string
	Role   string
	Waits  int // sessions waiting on locks (or on the lock manager)
	// Degraded: the lock table is busy (deadlock checks): Root is a
	// likely root, found without it.
	Degraded bool
	// Root is the root blocker (or likely one); nil when none is known.
	Root  *pg.Backend
	Since time.Time
	Now   time.Time
	// Over: the pile-up has drained.
	Over bool
}

// PileUpMessage renders a lock pile-up: how many wait, the root blocker
// (marked likely when the lock table could not say) with its buttons; then
// that it is over. It never says the target is down: a busy lock table is
// not a dead server.
func PileUpMessage(p PileUp) Message {
	where := targetName(p.Target, p.Role)
	if p.Over {
		return revise(Message{
			Text: fmt.Sprintf("pgkill: lock pile-up on %s is over", p.Target),
			Blocks: []slack.Block{
				section("pileup", fmt.Sprintf(":white_check_mark: *Lock pile-up over* on %s: nobody waits on locks any more.", where)),
				contextLine("when", fmt.Sprintf("Alerted %s · over %s", slackDate(p.Since), slackDate(p.Now))),
			},
		}, p.Now, "over")
	}
	head := fmt.Sprintf(":rotating_light: *Lock pile-up* on %s: *%s waiting*", where, plural(p.Waits, "session", "sessions"))
	text := fmt.Sprintf("pgkill: lock pile-up on %s: %d waiting", p.Target, p.Waits)
	if p.Degraded {
		head += " — the lock table is busy (PostgreSQL's deadlock checks): the blocking tree cannot be read now"
	}
	bs := []slack.Block{}
	switch {
	case p.Root == nil:
		bs = append(bs, section("pileup", head+"\nNo root blocker found yet: list the target for the sessions."))
	default:
		r := *p.Root
		which := "root blocker"
		if p.Degraded || r.LikelyRoot {
			which = "likely root blocker (a guess made without the lock table)"
		}
		text += fmt.Sprintf(", %s pid %d", strings.SplitN(which, " (", 2)[0], r.PID)
		bs = append(bs, section("pileup", fmt.Sprintf("%s\nThe %s:\n%s", head, which, backendText(r, p.Role, 1200))), backendActions("actions", r))
	}
	bs = append(bs, contextLine("when", fmt.Sprintf("Alerted %s · updated %s · Cancel/Terminate need an approver", slackDate(p.Since), slackDate(p.Now))))
	return revise(Message{Text: text, Blocks: bs}, p.Now, "")
}
