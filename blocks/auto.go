package blocks

import (
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// autoMessage renders a rule's request: while it counts down, what will
// happen and when, why, with Stop (anyone who may see the target) and Do it
// now (an approver); after, what PostgreSQL did, as any card.
func autoMessage(r request.Request, approvers []string) Message {
	b, a := r.Backend, r.Auto
	verb := string(r.Action)
	rule := "autopilot rule " + inline(a.Rule)
	var bs []slack.Block
	var text string
	switch {
	case r.State == request.Pending && a.DryRun():
		text = fmt.Sprintf("pgkill: dry run: autopilot rule %s would %s pid %d on %s", a.Rule, verb, b.PID, b.Target)
		bs = append(bs,
			section("ask", fmt.Sprintf(":robot_face: *Dry run*: %s would *%s* pid %d on *%s* at %s: %s.\nNothing will be signalled: the rule's mode is dry-run.\n%s",
				rule, verb, b.PID, Escape(b.Target), slackTime(r.Deadline), Escape(a.Why), codeBlock(b.Query, 800))))
	case r.State == request.Pending:
		text = fmt.Sprintf("pgkill: autopilot rule %s will %s pid %d on %s at %s UTC", a.Rule, verb, b.PID, b.Target, r.Deadline.UTC().Format("15:04:05"))
		bs = append(bs,
			section("ask", fmt.Sprintf(":robot_face: %s will *%s* pid %d on *%s* / %s at %s (%s after it was posted): %s.\nuser %s · app %s\n%s",
				rule, strings.ToUpper(verb), b.PID, Escape(b.Target), inline(b.Database), slackTime(r.Deadline), Duration(r.Deadline.Sub(r.Requested)),
				Escape(a.Why), inline(b.User), inline(b.Application), codeBlock(b.Query, 1200))),
			contextLine("who", fmt.Sprintf("Request %s · *Stop*: anyone who may see %s · *Do it now*: %s", Escape(r.ID), Escape(b.Target), Mentions(approvers))),
			slack.NewActionBlock("decide",
				button(ActionStop, "Stop", r.ID, slack.StyleDanger),
				button(ActionApprove, "Do it now", r.ID, "").WithConfirm(slack.NewConfirmationBlockObject(
					plain(Truncate(fmt.Sprintf("%s pid %d now?", capitalize(verb), b.PID), 100)),
					plain(Truncate(fmt.Sprintf("This will %s pid %d on %s now, before the countdown ends.", verb, b.PID, b.Target), 300)),
					plain(Truncate(capitalize(verb)+" now", 30)), plain("Not now")).WithStyle(slack.StyleDanger)),
			))
	case r.State == request.Approved:
		text = fmt.Sprintf("pgkill: autopilot rule %s: %s of pid %d, signalling", a.Rule, verb, b.PID)
		bs = append(bs, section("ask", fmt.Sprintf(":gear: %s: *%s* pid %d on *%s* — signalling and verifying…", rule, strings.ToUpper(verb), b.PID, Escape(b.Target))))
	default:
		icon, summary := outcomeText(r)
		switch {
		case r.State == request.Denied:
			icon, summary = ":octagonal_sign:", fmt.Sprintf("*Stopped* by %s before the countdown ended. Nothing was signalled.", mention(r.Decider))
		case r.NotSent != "" && strings.HasPrefix(r.NotSent, "dry run"):
			icon, summary = ":robot_face:", "*Dry run*: "+escapeTruncate(r.NotSent, 600)+"."
		}
		text = "pgkill: " + Truncate(stripMrkdwn(summary), 200)
		bs = append(bs, section("ask", fmt.Sprintf("%s %s: *%s* pid %d on *%s* (%s)\n%s%s", icon, rule, strings.ToUpper(verb), b.PID, Escape(b.Target), Escape(a.Why), summary, preventText(r.Prevent))))
	}
	bs = append(bs, contextLine("trail", autoTrail(r)))
	at := r.Requested
	if !r.Decided.IsZero() {
		at = r.Decided
	}
	return revise(Message{Text: text, Blocks: bs}, at, string(r.State))
}

func autoTrail(r request.Request) string {
	s := fmt.Sprintf("Request %s by autopilot rule %s at %s", Escape(r.ID), inline(r.Auto.Rule), slackDate(r.Requested))
	switch {
	case r.State == request.Denied:
		s += fmt.Sprintf(" · stopped by %s at %s", mention(r.Decider), slackDate(r.Decided))
	case (r.State == request.Approved || r.State == request.Done) && r.Decider != r.Auto.Actor():
		s += fmt.Sprintf(" · done now by %s at %s", mention(r.Decider), slackDate(r.Decided))
	case r.State == request.Approved || r.State == request.Done:
		s += fmt.Sprintf(" · carried out at %s", slackDate(r.Decided))
	}
	return s
}

// slackTime shows a time of day as Slack does, in the reader's zone.
func slackTime(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{time_secs}|%s>", t.Unix(), t.UTC().Format("15:04:05 UTC"))
}

// Breaker says a rule stopped acting on a target and asks a person.
func Breaker(rule, target, reason, command string) Message {
	return Message{
		Text: fmt.Sprintf("pgkill: autopilot rule %s stopped on %s: %s", rule, target, reason),
		Blocks: []slack.Block{section("breaker", fmt.Sprintf(":octagonal_sign: *Autopilot rule %s stopped on %s*: it %s. It acts there no more until a person looks and resumes it: `%s autopilot resume %s %s`.",
			inline(rule), Escape(target), Escape(reason), Escape(command), Escape(rule), Escape(target)))},
	}
}

// preventText suggests the server setting that would have ended a session
// without anyone, and says what its role has now; "" when there is none.
func preventText(p *request.Prevention) string {
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("\n:bulb: *Prevent the repeat*: `ALTER ROLE %s IN DATABASE %s SET %s = '%s'` would have ended it without anyone",
		Escape(pg.QuoteIdent(p.Role)), Escape(pg.QuoteIdent(p.DB)), p.Setting, p.Value)
	if p.RDS {
		s += fmt.Sprintf(" (or `%s` in the DB parameter group, for every role)", p.Setting)
	}
	switch {
	case p.Current == "":
		s += "; pgkill could not read the role's current setting."
	default:
		s += fmt.Sprintf("; now it is %s (%s).", inline(p.Current), Escape(p.Source))
	}
	return s + " A suggestion: pgkill changes no setting."
}

// AutopilotStatus shows the rules, their modes, and what stops them now.
func AutopilotStatus(rules []autopilot.Rule, pauses []pg.PauseRow, command string) Message {
	var lines []string
	if len(rules) == 0 {
		lines = append(lines, "No autopilot rule is declared (the policy file's `autopilot:` section; see docs/autopilot.md).")
	}
	for _, r := range rules {
		icon := ":robot_face:"
		if r.Mode == autopilot.DryRun {
			icon = ":test_tube:"
		}
		lines = append(lines, icon+" "+Escape(DescribeRule(r)))
	}
	for _, p := range pauses {
		what := "paused on " + strings.TrimPrefix(p.Scope, "target:")
		if p.Scope == autopilot.All {
			what = "paused on every target"
		}
		if autopilot.IsBreaker(p) {
			what = "breaker tripped: " + strings.Replace(strings.TrimPrefix(p.Scope, "breaker:"), ":", " on ", 1)
		}
		lines = append(lines, fmt.Sprintf(":double_vertical_bar: %s since %s (%s)", Escape(what), slackDate(p.At), p.Reason))
	}
	lines = append(lines, fmt.Sprintf("`%s autopilot pause [TARGET]` stops every rule (approvers); `%s autopilot resume [TARGET]` or `resume RULE TARGET` (after a breaker) lets them act again.", Escape(command), Escape(command)))
	return Message{Text: "pgkill autopilot", Blocks: []slack.Block{header("pgkill autopilot"), section("rules", Truncate(strings.Join(lines, "\n"), MaxText-200))}}
}

// AutoWhy says, in words an approver reads on the card, what about b made
// r match: "idle in transaction for 14m03s, blocks 212 sessions". Plain
// text (the command line prints it too).
func AutoWhy(r autopilot.Rule, b pg.Backend) string {
	var why []string
	if b.State.Idle() {
		why = append(why, fmt.Sprintf("%s for %s", b.State, Duration(b.Duration)))
	} else {
		why = append(why, "running for "+Duration(b.Duration))
	}
	if r.XactAge > 0 {
		why = append(why, "transaction open "+Duration(b.XactAge))
	}
	if r.Blocking > 0 {
		why = append(why, "blocks "+plural(b.BlockingTotal, "session", "sessions"))
	}
	if r.Waiting > 0 {
		why = append(why, "waiting on a lock")
	}
	return strings.Join(why, ", ")
}

// DescribeRule is a rule in one line of plain text, for /pgkill autopilot
// and the command line.
func DescribeRule(r autopilot.Rule) string {
	var cond []string
	for _, c := range []struct{ k, v string }{{"user", r.User}, {"app", r.App}, {"database", r.Database}, {"state", string(r.State)}} {
		if c.v != "" {
			cond = append(cond, c.k+" "+c.v)
		}
	}
	for _, c := range []struct {
		k string
		v time.Duration
	}{{"for ≥", r.Duration}, {"transaction open ≥", r.XactAge}, {"waiting on a lock ≥", r.Waiting}} {
		if c.v > 0 {
			cond = append(cond, c.k+" "+Typed(c.v))
		}
	}
	if r.Blocking > 0 {
		cond = append(cond, fmt.Sprintf("root blocker of ≥ %d", r.Blocking))
	}
	where := "every target"
	if len(r.Targets) > 0 {
		where = strings.Join(r.Targets, ", ")
	}
	act := string(r.Action)
	if r.Action == autopilot.CancelThenTerminate {
		act = "cancel, then terminate " + Typed(r.EscalateAfter) + " later if still running"
	}
	return fmt.Sprintf("%s (%s) on %s: %s when %s, after a %s countdown; at most %d per %s", r.Name, r.Mode, where, act,
		strings.Join(cond, ", "), Typed(r.Countdown), r.Limit, Typed(r.Window))
}
