package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// autoLate is how late past its countdown a rule's request may still be
// carried out (no replica ran the sweep in between); later it expires.
const autoLate = time.Minute

// Fire makes the request a rule's match asks for, and posts its countdown
// card in channel — unless the autopilot is paused there, the rule's
// breaker trips now, or the same request is open already. What it does is
// counted and audited, the actor named as the rule.
func (w *Workflow) Fire(ctx context.Context, f autopilot.Firing, channel string) {
	r := f.Rule
	pauses, err := w.pauses.All(ctx)
	if err != nil {
		w.log.Warn("autopilot: could not read its pauses; nothing fired this round", slog.String("rule", r.Name), slog.String("error", err.Error()))
		return
	}
	if _, stopped := autopilot.Stopped(pauses, r.Name, f.Backend.Target); stopped {
		return
	}
	auto := &request.Auto{Rule: r.Name, Mode: string(r.Mode), Why: blocks.AutoWhy(r, f.Backend)}
	if r.Action == autopilot.CancelThenTerminate {
		auto.Escalate = r.EscalateAfter
	}
	// Once per statement execution: counting down now, or done (carried
	// out, stopped, a dry run shown) — a rule never repeats itself on it.
	if made, err := w.store.Made(ctx, request.Request{Action: r.Action.First(), Backend: f.Backend, Auto: auto}); err != nil || made {
		return
	}
	n, err := w.store.Fired(ctx, request.AutoPrefix(r.Name, f.Backend.Target), r.Window)
	if err != nil {
		w.log.Warn("autopilot: could not count the rule's firings; nothing fired", slog.String("rule", r.Name), slog.String("error", err.Error()))
		return
	}
	if n >= r.Limit {
		w.trip(ctx, r, f.Backend.Target, n, channel)
		return
	}
	w.autoRequest(ctx, auto, r.Action.First(), f.Backend, r.Countdown, channel)
}

// autoRequest records a rule's request, to be carried out countdown from
// now by the store's clock, and posts its card.
func (w *Workflow) autoRequest(ctx context.Context, auto *request.Auto, action pg.Action, b pg.Backend, countdown time.Duration, channel string) {
	r := request.Request{Action: action, Backend: b, Requester: auto.Actor(), Channel: channel, Needed: 1, Auto: auto}
	got, created, err := w.store.Add(ctx, r, countdown+autoLate, countdown)
	if err != nil {
		w.log.Error("autopilot: could not record a rule's request", slog.String("rule", auto.Rule), slog.String("error", err.Error()))
		return
	}
	if !created {
		return
	}
	w.metrics.Autopilot(auto.Rule, auto.Mode)
	w.audit(AuditRequest, auto.Actor(), got)
	w.publish(ctx, got, "")
}

// trip stops rule on target: it fired limit times within its window. A
// card says so, once, and asks a person to look (and resume it).
func (w *Workflow) trip(ctx context.Context, r autopilot.Rule, target string, n int, channel string) {
	reason := fmt.Sprintf("fired %d times on %s within %s (its limit: %d per %s)", n, target, blocks.Typed(r.Window), r.Limit, blocks.Typed(r.Window))
	tripped, err := w.pauses.Pause(ctx, autopilot.BreakerScope(r.Name, target), reason, "autopilot")
	if err != nil || !tripped {
		return
	}
	w.log.Warn("autopilot: a rule's breaker tripped", slog.String("rule", r.Name), slog.String("target", target), slog.Int("fired", n))
	w.metrics.Autopilot(r.Name, "breaker")
	w.out.Put(outbox.Item{Key: "breaker|" + r.Name + "|" + target, Channel: channel,
		Msg: blocks.Breaker(r.Name, target, reason, w.cfg.Command)})
}

// autoDue carries out a rule's request whose countdown has ended (by the
// store's clock) — through the same identity-checked statement as every
// request — or closes it: a dry run, a pause, or a card nobody saw.
func (w *Workflow) autoDue(ctx context.Context, r request.Request) {
	pctx, cancel := context.WithTimeout(ctx, request.CallTimeout)
	pauses, err := w.pauses.All(pctx)
	cancel()
	switch {
	case err != nil:
		w.log.Warn("autopilot: could not read its pauses; the next sweep retries", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		return
	case r.CardTS == "":
		w.close(ctx, r, request.Withdrawn, "its card was not posted (or not recorded as posted) before its countdown ended, so nobody could have stopped it: nothing was signalled")
		return
	default:
		if p, stopped := autopilot.Stopped(pauses, r.Auto.Rule, r.Backend.Target); stopped {
			w.close(ctx, r, request.Withdrawn, fmt.Sprintf("the autopilot is paused here (%s, by %s): nothing was signalled", p.Reason, p.By))
			return
		}
	}
	if r.Auto.DryRun() {
		w.close(ctx, r, request.Expired, fmt.Sprintf("dry run: rule %s would have %s pid %d now; nothing was signalled (its mode is dry-run)", r.Auto.Rule, pastTense(r.Action), r.Backend.PID))
		return
	}
	start := time.Now()
	got, err := w.store.Apply(ctx, r.ID, request.Event{Kind: request.Approve, User: r.Auto.Actor(), SelfApproval: true, Budget: w.cfg.Budget + w.cfg.Margin})
	if err != nil {
		if !errors.Is(err, request.ErrDecided) && !errors.Is(err, request.ErrExpired) {
			w.log.Error("autopilot: could not record a rule's approval; the next sweep retries", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		}
		return
	}
	w.carryOut(ctx, got, start, r.Auto.Actor())
}

// carryOut signals an approved request, records and audits what happened,
// shows it on the card, and — for a rule that cancels then terminates —
// counts down to a terminate of what still runs.
func (w *Workflow) carryOut(ctx context.Context, r request.Request, start time.Time, actor string) {
	// Past the click's (or the sweep's) deadline: the signal, its
	// verification and its record each run on their own budget.
	ctx = context.WithoutCancel(ctx)
	w.audit(AuditApprove, actor, r)
	w.metrics.Decision("approved")
	w.refresh(r) // "approved, signalling…"
	done := w.execute(ctx, r, start)
	w.audit(AuditOutcome, actor, done)
	w.metrics.Signal(string(done.Action), done.Word())
	if done.Outcome.Result == pg.Sent && done.VerifyErr == "" {
		w.metrics.Verified(string(done.Action), done.Verified.After)
	}
	w.refresh(done)
	if a := done.Auto; a != nil && a.Escalate > 0 && done.Action == pg.Cancel && done.Outcome.Result == pg.Sent && !done.Verified.Ended {
		next := &request.Auto{Rule: a.Rule, Mode: a.Mode, Why: fmt.Sprintf("still running after the cancel of %s", done.ID)}
		w.autoRequest(ctx, next, pg.Terminate, done.Backend, a.Escalate, done.Channel)
	}
}

// Stop handles Stop on a rule's card: anyone who may see the target may
// stop the autopilot's request before its countdown ends.
func (w *Workflow) Stop(ctx context.Context, c Click, id string) {
	r, err := w.store.Get(ctx, id)
	switch {
	case errors.Is(err, request.ErrUnknown):
		w.Tell(c.ResponseURL, unknownRequest)
		return
	case err != nil:
		w.storeFailed(c.ResponseURL, "read the request", err)
		return
	case r.Auto == nil:
		w.Tell(c.ResponseURL, ":warning: that button is not one pgkill understands; run the command again.")
		return
	case !w.onCard(ctx, c, r):
		return
	}
	for _, t := range r.Targets() {
		if d := w.policy.May(ctx, policy.View, c.User, c.Channel, t); !d.Allowed {
			w.Refuse(c.ResponseURL, c.User, c.Channel, "stop "+r.ID, r.Targets(), d.Why)
			return
		}
	}
	w.decide(ctx, c, id, request.Event{Kind: request.Deny, User: c.User}, AuditDeny)
}

func pastTense(a pg.Action) string {
	if a == pg.Cancel {
		return "cancelled"
	}
	return "terminated"
}

// Pauses returns what stops the autopilot now.
func (w *Workflow) Pauses(ctx context.Context) ([]pg.PauseRow, error) { return w.pauses.All(ctx) }

// Pause stops every rule on target ("" for every target) until a person
// resumes it, across replicas and restarts: an approver of every target it
// covers only. It says so in channel (the alert channel) and to the user.
func (w *Workflow) Pause(ctx context.Context, c Click, target string, targets []string, channel string) {
	scope, where := autopilot.All, "every target"
	if target != "" {
		scope, where, targets = autopilot.TargetScope(target), target, []string{target}
	}
	if !w.mayApprove(ctx, c, "autopilot pause", targets) {
		return
	}
	ok, err := w.pauses.Pause(ctx, scope, "paused by <@"+c.User+">", c.User)
	switch {
	case err != nil:
		w.storeFailed(c.ResponseURL, "pause the autopilot", err)
		return
	case !ok:
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: the autopilot is paused on %s already. `%s autopilot` shows by whom.", where, w.cfg.Command))
		return
	}
	w.autoNotice(channel, c.User, "paused", where)
	w.Tell(c.ResponseURL, fmt.Sprintf(":double_vertical_bar: the autopilot is paused on %s: no rule acts there (countdowns under way end without a signal) until `%s autopilot resume%s`.", where, w.cfg.Command, suffix(target)))
}

// Resume ends a pause of target ("" for every target), or rule's breaker
// on target when rule is set: an approver of every target it covers only.
func (w *Workflow) Resume(ctx context.Context, c Click, rule, target string, targets []string, channel string) {
	scope, where := autopilot.All, "every target"
	switch {
	case rule != "":
		scope, where, targets = autopilot.BreakerScope(rule, target), fmt.Sprintf("rule %s on %s", rule, target), []string{target}
	case target != "":
		scope, where, targets = autopilot.TargetScope(target), target, []string{target}
	}
	if !w.mayApprove(ctx, c, "autopilot resume", targets) {
		return
	}
	ok, err := w.pauses.Resume(ctx, scope)
	switch {
	case err != nil:
		w.storeFailed(c.ResponseURL, "resume the autopilot", err)
		return
	case !ok:
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: nothing to resume: the autopilot is not paused on %s (`%s autopilot` shows what is).", where, w.cfg.Command))
		return
	}
	w.autoNotice(channel, c.User, "resumed", where)
	w.Tell(c.ResponseURL, fmt.Sprintf(":arrow_forward: the autopilot acts again on %s.", where))
}

func (w *Workflow) mayApprove(ctx context.Context, c Click, what string, targets []string) bool {
	for _, t := range targets {
		if d := w.policy.May(ctx, policy.Approve, c.User, c.Channel, t); !d.Allowed {
			w.Refuse(c.ResponseURL, c.User, c.Channel, what, targets, d.Why)
			return false
		}
	}
	return true
}

// autoNotice records a pause or a resume: in the log as an audit record,
// and as a line in the alert channel.
func (w *Workflow) autoNotice(channel, user, what, where string) {
	w.log.Info("audit", slog.String("event", "autopilot-"+what), slog.String("actor", user), slog.String("scope", where))
	if channel != "" {
		w.out.Put(outbox.Item{Key: fmt.Sprintf("autopilot|%s|%s|%d", what, where, time.Now().UnixNano()), Channel: channel,
			Msg: blocks.Notice(fmt.Sprintf(":robot_face: the autopilot was %s on %s by %s.", what, blocks.Escape(where), blocks.Mentions([]string{user})))})
	}
}

func suffix(target string) string {
	if target == "" {
		return ""
	}
	return " " + target
}
