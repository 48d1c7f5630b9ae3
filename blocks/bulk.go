package blocks

import (
	"fmt"
	"sort"
	"strings"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// BulkButtons offers Cancel all / Terminate all for the n signallable
// backends a listing matched, stored by the bot as setID.
func BulkButtons(id, setID string, n int) slack.Block {
	return slack.NewActionBlock(id,
		button(ActionBulkCancel, fmt.Sprintf("Cancel all %d", n), EncodeBulk(Bulk{Action: pg.Cancel, SetID: setID}), ""),
		button(ActionBulkTerminate, fmt.Sprintf("Terminate all %d", n), EncodeBulk(Bulk{Action: pg.Terminate, SetID: setID}), slack.StyleDanger),
	)
}

// breakdown counts backends by key, most first, at most show keys:
// "`a` ×50, `b` ×5, … 3 more".
func breakdown(bs []pg.Backend, key func(pg.Backend) string, show int) string {
	n := map[string]int{}
	for _, b := range bs {
		n[key(b)]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return n[keys[i]] > n[keys[j]] || n[keys[i]] == n[keys[j]] && keys[i] < keys[j] })
	var parts []string
	for i, k := range keys {
		if i == show {
			parts = append(parts, fmt.Sprintf("… %d more", len(keys)-show))
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", inline(k), n[k]))
	}
	return strings.Join(parts, ", ")
}

// bulkMessage renders the card of a bulk request.
func bulkMessage(r request.Request, approvers []string) Message {
	verb := strings.ToUpper(string(r.Action))
	n := len(r.Members)
	what := fmt.Sprintf("*%s ALL %d* sessions", verb, n)
	if r.Scope != "" {
		what += " matching " + inline(Truncate(r.Scope, 300))
	}
	effect := "ends each running statement; the sessions survive"
	if r.Action == pg.Terminate {
		effect = "closes each session and rolls back its transaction"
	}
	longest := append([]pg.Backend(nil), r.Members...)
	sort.SliceStable(longest, func(i, j int) bool { return longest[i].Duration > longest[j].Duration })
	var top []string
	for _, b := range longest[:min(3, len(longest))] {
		top = append(top, fmt.Sprintf("pid %d on %s · %s · user %s · app %s\n%s", b.PID, Escape(b.Target), Duration(b.Duration), inline(b.User), inline(b.Application), codeBlock(b.Query, 300)))
	}
	facts := fmt.Sprintf("*By target:* %s\n*By user:* %s\n*By application:* %s\n*By database:* %s",
		breakdown(r.Members, func(b pg.Backend) string { return b.Target }, 6),
		breakdown(r.Members, func(b pg.Backend) string { return b.User }, 6),
		breakdown(r.Members, func(b pg.Backend) string { return b.Application }, 6),
		breakdown(r.Members, func(b pg.Backend) string { return b.Database }, 6))
	if left := leftOut(r.Left); left != "" {
		facts += "\n*Left out:* " + left
	}
	var bs []slack.Block
	var text string
	switch r.State {
	case request.Pending:
		text = fmt.Sprintf("pgkill: approval needed to %s %d sessions", r.Action, n)
		bs = append(bs,
			section("ask", fmt.Sprintf(":raised_hand: %s asks to %s\n_%s %s._%s", mention(r.Requester), what, capitalize(string(r.Action)), effect, reasonText(r.Reason))),
			section("facts", facts),
			section("longest", "*Longest:*\n"+strings.Join(top, "\n")),
			contextLine("who", fmt.Sprintf("Request %s · the whole list is in the thread · each session is signalled only if it still runs the statement listed · approvers: %s%s · expires %s",
				Escape(r.ID), Mentions(approvers), votesText(r), slackDate(r.Expires))),
			slack.NewActionBlock("decide",
				button(ActionApprove, "Approve", r.ID, slack.StylePrimary).WithConfirm(
					slack.NewConfirmationBlockObject(
						plain(Truncate(fmt.Sprintf("%s all %d sessions?", capitalize(string(r.Action)), n), 100)),
						plain(Truncate(fmt.Sprintf("This will %s %d sessions: it %s. Each is checked against the listed statement first.", r.Action, n, effect), 300)),
						plain(Truncate(fmt.Sprintf("%s %d", capitalize(string(r.Action)), n), 30)),
						plain("Not now"),
					).WithStyle(slack.StyleDanger)),
				button(ActionDeny, "Deny", r.ID, slack.StyleDanger),
				button(ActionWithdraw, "Withdraw", r.ID, ""),
			),
		)
	case request.Approved:
		text = fmt.Sprintf("pgkill: %s of %d sessions approved, signalling", r.Action, n)
		bs = append(bs, section("ask", fmt.Sprintf(":gear: %s — approved by %s, signalling and verifying…", what, Mentions(r.Voters()))), section("facts", facts))
	default:
		icon, summary := bulkOutcome(r)
		text = "pgkill: " + Truncate(stripMrkdwn(summary), 200)
		bs = append(bs, section("ask", fmt.Sprintf("%s %s\n%s%s", icon, what, summary, reasonText(r.Reason))), section("facts", facts))
		if still := r.StillRunning(); len(still) > 0 && r.Action == pg.Cancel && r.State == request.Done {
			bs = append(bs, slack.NewActionBlock("next", button(ActionBulkNext, fmt.Sprintf("Terminate the %d still running", len(still)), r.ID, slack.StyleDanger)))
		}
	}
	bs = append(bs, contextLine("trail", trail(r)))
	at := r.Requested
	if !r.Decided.IsZero() {
		at = r.Decided
	}
	rev := string(r.State)
	if r.State == request.Pending && len(r.Votes) > 0 {
		rev += fmt.Sprintf("%d", len(r.Votes))
	}
	m, _ := fit(300, func(int) Message { return revise(Message{Text: text, Blocks: bs}, at, rev) })
	return m
}

func bulkOutcome(r request.Request) (icon, text string) {
	switch r.State {
	case request.Denied, request.Expired, request.Withdrawn:
		return outcomeText(r)
	}
	if r.NotSent != "" { // nothing was signalled: there is no tally to show
		return outcomeText(r)
	}
	if r.Err != "" {
		return ":x:", "*Error*: " + escapeTruncate(r.Err, 600) + "\nSome signals may have been sent; list again to see what still runs."
	}
	t := r.Tally()
	parts := []string{fmt.Sprintf("*%d ended*", t.Ended), fmt.Sprintf("%d skipped (no longer running the listed statement: nothing sent)", t.Skipped)}
	if t.MaybeNext > 0 {
		parts = append(parts, fmt.Sprintf("%d over but had ended by themselves just before the signal, which may have reached their next statement", t.MaybeNext))
	}
	parts = append(parts, fmt.Sprintf("*%d still running* after the signal", t.Running), fmt.Sprintf("%d denied by PostgreSQL", t.Denied))
	if t.Protected > 0 {
		parts = append(parts, fmt.Sprintf("%d protected now, though not when listed (a protection rule matches them: nothing sent)", t.Protected))
	}
	if t.Unverified > 0 {
		parts = append(parts, fmt.Sprintf("%d signalled but not watched to the end (pgkill could not read them after the signal: list again)", t.Unverified))
	}
	if t.Failed > 0 {
		parts = append(parts, fmt.Sprintf("%d could not be signalled (their target did not answer; the signal may or may not have been sent)", t.Failed))
	}
	icon = ":white_check_mark:"
	if t.Running+t.Denied+t.Failed+t.MaybeNext+t.Unverified > 0 {
		icon = ":warning:"
	}
	next := ""
	if t.Running > 0 && r.Action == pg.Cancel {
		next = "\nNext: *Terminate the still running* below asks for a new approval."
	} else if t.Running > 0 {
		next = "\nThey may be in an uninterruptible section; list again in a moment."
	}
	return icon, strings.Join(parts, " · ") + "." + next
}

// LeftOut counts what a bulk request left out, one "N why" each, sorted by
// why: the card and the command line say it alike.
func LeftOut(left map[string]int) []string {
	keys := make([]string, 0, len(left))
	for k := range left {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", left[k], k)
	}
	return parts
}

func leftOut(left map[string]int) string { return Escape(strings.Join(LeftOut(left), " · ")) }

// MemberList is the whole set of a bulk request, for its thread: as many
// messages as Slack's limits need, one line per session.
func MemberList(id string, members []pg.Backend) []Message {
	var out []Message
	var lines []string
	first, size := 0, 0
	flush := func(next int) {
		if len(lines) == 0 {
			return
		}
		text := fmt.Sprintf("Request %s: sessions %d–%d of %d", id, first+1, next, len(members))
		out = append(out, Message{Text: text, Blocks: []slack.Block{section(fmt.Sprintf("m%d", len(out)), strings.Join(lines, "\n"))}})
		lines, size, first = nil, 0, next
	}
	for i, b := range members {
		line := fmt.Sprintf("pid %d on %s · %s · %s · user %s · app %s · db %s", b.PID, Escape(b.Target), Duration(b.Duration),
			Escape(string(b.State)), inline(Truncate(b.User, 40)), inline(Truncate(b.Application, 40)), inline(Truncate(b.Database, 40)))
		if size+len([]rune(line))+1 > MaxText-100 || len(lines) == 40 {
			flush(i)
		}
		lines = append(lines, line)
		size += len([]rune(line)) + 1
	}
	flush(len(members))
	return out
}
