package blocks

import (
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// RequestMessage renders the card for r's current state: with Approve, Deny
// and Withdraw while pending, mentioning approvers; with the outcome and no
// buttons after.
func RequestMessage(r request.Request, approvers []string) Message {
	if len(r.Members) > 0 {
		return bulkMessage(r, approvers)
	}
	if r.Auto != nil {
		return autoMessage(r, approvers)
	}
	verb := strings.ToUpper(string(r.Action))
	b := r.Backend
	what := fmt.Sprintf("*%s* pid %d on *%s* / %s · user %s · app %s · %s",
		verb, b.PID, Escape(b.Target), inline(b.Database), inline(b.User), inline(b.Application), stateText(b))
	if bl := blocksText(b); bl != "" {
		what += "\n:link: " + bl
	}
	effect := "ends the running statement; the session survives"
	if r.Action == pg.Terminate {
		effect = "closes the whole session and rolls back its transaction"
	}
	var bs []slack.Block
	var text string
	switch r.State {
	case request.Pending:
		text = fmt.Sprintf("pgkill: approval needed to %s pid %d on %s", r.Action, b.PID, b.Target)
		bs = append(bs,
			section("ask", fmt.Sprintf(":raised_hand: %s asks to %s\n_%s %s._%s\n%s",
				mention(r.Requester), what, capitalize(string(r.Action)), effect, reasonText(r.Reason), codeBlock(b.Query, 1500))),
			contextLine("who", fmt.Sprintf("Request %s · approvers: %s%s · expires %s", Escape(r.ID), Mentions(approvers), votesText(r), slackDate(r.Expires))),
			slack.NewActionBlock("decide",
				button(ActionApprove, "Approve", r.ID, slack.StylePrimary).WithConfirm(
					slack.NewConfirmationBlockObject(
						plain(Truncate(fmt.Sprintf("%s pid %d?", capitalize(string(r.Action)), b.PID), 100)),
						plain(Truncate(fmt.Sprintf("This will %s pid %d on %s (user %s): it %s.", r.Action, b.PID, b.Target, b.User, effect), 300)),
						plain(Truncate(capitalize(string(r.Action))+" it", 30)),
						plain("Not now"),
					).WithStyle(slack.StyleDanger)),
				button(ActionDeny, "Deny", r.ID, slack.StyleDanger),
				button(ActionWithdraw, "Withdraw", r.ID, ""),
			),
		)
	case request.Approved:
		text = fmt.Sprintf("pgkill: %s of pid %d approved, signalling", r.Action, b.PID)
		bs = append(bs, section("ask", fmt.Sprintf(":gear: %s — approved by %s, signalling and verifying…\n%s", what, mention(r.Decider), codeBlock(b.Query, 1500))))
	default:
		icon, summary := outcomeText(r)
		text = "pgkill: " + Truncate(stripMrkdwn(summary), 200)
		bs = append(bs, section("ask", fmt.Sprintf("%s %s\n%s%s%s\n%s", icon, what, summary, reasonText(r.Reason), preventText(r.Prevent), codeBlock(b.Query, 1200))))
		if r.State == request.Done && r.Action == pg.Cancel && r.Err == "" && r.Outcome.Result == pg.Sent && (!r.Verified.Ended || r.Verified.AbortedTxOpen) {
			bs = append(bs, slack.NewActionBlock("next", button(ActionRequestTerminate, "Request Terminate", EncodeSignal(Signal{Action: pg.Terminate, Identity: b.Identity}), slack.StyleDanger)))
		}
	}
	bs = append(bs, contextLine("trail", trail(r)))
	at := r.Requested
	if !r.Decided.IsZero() {
		at = r.Decided
	}
	rev := string(r.State)
	if r.State == request.Pending && len(r.Votes) > 0 { // each approval given is a new revision of the card
		rev += fmt.Sprintf("%d", len(r.Votes))
	}
	return revise(Message{Text: text, Blocks: bs}, at, rev)
}

// outcomeText states what happened, plainly.
func outcomeText(r request.Request) (icon, text string) {
	switch r.State {
	case request.Denied:
		return ":no_entry_sign:", fmt.Sprintf("*Denied* by %s. Nothing was signalled.", mention(r.Decider))
	case request.Expired:
		if r.NotSent != "" { // closed before its time: its target left the fleet
			return ":information_source:", "*Closed*: " + escapeTruncate(r.NotSent, 600) + "."
		}
		return ":hourglass:", "*Expired*: nobody approved it in time. Nothing was signalled."
	case request.Withdrawn:
		if r.NotSent != "" { // pgkill closed it, not its requester
			return ":information_source:", "*Closed* by pgkill: " + escapeTruncate(r.NotSent, 600) + "."
		}
		return ":leftwards_arrow_with_hook:", fmt.Sprintf("*Withdrawn* by %s. Nothing was signalled.", mention(r.Requester))
	}
	if r.Err == "" && r.Outcome.Result == pg.Sent && r.VerifyErr != "" {
		return ":warning:", "*Signal sent* (PostgreSQL accepted it for exactly that backend), but pgkill could not watch it end: " +
			escapeTruncate(r.VerifyErr, 400) + "\nList again to see whether it still runs."
	}
	if r.NotSent != "" {
		return ":information_source:", "*Nothing signalled*: " + escapeTruncate(r.NotSent, 600) + "."
	}
	if r.Err != "" {
		return ":x:", "*Error*: " + escapeTruncate(r.Err, 600) + "\nThe signal may or may not have been sent; list again to see the backend's state."
	}
	switch r.Outcome.Result {
	case pg.Gone:
		return ":information_source:", "*Nothing signalled*: that query is no longer running (it finished, or the session moved on to another query)."
	case pg.ServerChanged:
		return ":information_source:", "*Nothing signalled*: the server restarted or failed over since the listing; list again."
	case pg.Denied:
		return ":lock:", "*Permission denied* by PostgreSQL: " + escapeTruncate(r.Outcome.Message, 500) + "\nFix: " + Escape(r.Outcome.Fix)
	case pg.Protected:
		return ":lock:", "*Nothing signalled*: the session is protected now, though it was not when listed: it matches " + inline(Truncate(r.Outcome.Message, 500)) + "."
	}
	v := r.Verified
	if v.Ended && v.MaybeNext {
		return ":warning:", fmt.Sprintf("*The approved statement is over — but it had ended by itself just before the signal*, and by %s after it the session was running a statement that started before the signal: the %s may have reached that next statement. Check the application.", Duration(v.After), r.Action)
	}
	if v.Ended && v.AbortedTxOpen {
		return ":warning:", fmt.Sprintf("*The query ended* %s after the cancel, but its transaction is still open (idle in transaction, aborted) and holds %s until the client rolls back. Use *Request Terminate* below to end it.", Duration(v.After), plural(v.Locks, "lock", "locks"))
	}
	if v.Ended {
		what := "The query ended"
		if v.How == "session ended" {
			what = "The session ended"
		}
		return ":white_check_mark:", fmt.Sprintf("*%s* %s after the %s (verified).", what, Duration(v.After), r.Action)
	}
	why := pg.WhyStillRunning(r.Action, v)
	if r.Action == pg.Cancel {
		why += " Use *Request Terminate* below to ask for that."
	}
	return ":warning:", fmt.Sprintf("*Signal sent, still running* after %s (state %s, waiting on %s).\n%s",
		Duration(v.After), Escape(string(v.State)), Escape(orDash(v.WaitEventType+"/"+v.WaitEvent)), Escape(why))
}

func trail(r request.Request) string {
	s := fmt.Sprintf("Request %s by %s at %s", Escape(r.ID), mention(r.Requester), slackDate(r.Requested))
	switch r.State {
	case request.Approved, request.Done:
		if len(r.Votes) > 1 {
			s += fmt.Sprintf(" · approved by %s, the last at %s", Mentions(r.Voters()), slackDate(r.Decided))
		} else if r.Decider != "" {
			s += fmt.Sprintf(" · approved by %s at %s", mention(r.Decider), slackDate(r.Decided))
		}
	case request.Denied:
		s += fmt.Sprintf(" · denied by %s at %s", mention(r.Decider), slackDate(r.Decided))
	case request.Expired, request.Withdrawn:
		if r.NotSent != "" {
			s += fmt.Sprintf(" · closed by pgkill at %s", slackDate(r.Decided))
		} else {
			s += fmt.Sprintf(" · %s at %s", r.State, slackDate(r.Decided))
		}
	}
	return s
}

// reasonText shows the requester's reason, in their words, as a quote that
// cannot format, mention or link: "" when none was given.
func reasonText(reason string) string {
	if reason == "" {
		return ""
	}
	return "\n*Reason:* " + inline(OneLine(reason, 500))
}

// votesText says how far a request that needs several approvals has got:
// " · *1 of 2 approvals*: @x"; "" when one approval is enough.
func votesText(r request.Request) string {
	if r.NeedsVotes() <= 1 {
		return ""
	}
	s := fmt.Sprintf(" · *%d of %d approvals*", len(r.Votes), r.NeedsVotes())
	if len(r.Votes) > 0 {
		s += ": " + Mentions(r.Voters())
	}
	return s
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func orDash(s string) string {
	if s == "/" || s == "" {
		return "–"
	}
	return s
}

func stripMrkdwn(s string) string {
	return strings.NewReplacer("*", "", "_", "", "\n", " ").Replace(s)
}

// StaleCard renders an earlier card of request id, found when someone
// pressed one of its buttons: its process posted it, then stopped before
// recording it (or could not), and a newer card was posted. Only the newer card decides
// the request; this one loses its buttons.
func StaleCard(id string) Message {
	text := fmt.Sprintf("Request %s was posted again in a newer card, after this one: the pgkill process that posted this one could not record it (it stopped, or lost the state store), so its buttons are gone. Only the newer card decides the request.", id)
	return Message{Text: "pgkill: " + text, Blocks: []slack.Block{section("stale", ":information_source: "+Escape(text))}}
}
