package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// Autopilot fires the autopilot's rules as requests of the workflow: a
// rule's request has the rule as its requester and the end of its
// countdown as its deadline, and the sweep carries it out (due).
type Autopilot struct {
	w      *Workflow
	pauses autopilot.Pauses
	made   madeKeys // rules' requests known made
}

// autoLate is how late past its countdown a rule's request may still be
// carried out (no replica ran the sweep in between); later it expires.
const autoLate = time.Minute

// Fire makes the requests a poll's matches ask for, and posts their
// countdown cards in channel — unless the autopilot is paused there, a
// rule's breaker trips now, or the same request was made before (a rule
// acts once on one statement execution). What it does is counted and
// audited, the actor named as the rule.
func (a *Autopilot) Fire(ctx context.Context, fs []autopilot.Firing, channel string) {
	if len(fs) == 0 {
		return
	}
	pauses, err := a.pauses.All(ctx)
	if err != nil {
		a.w.log.Warn("autopilot: could not read its pauses; nothing fired this round", slog.String("error", err.Error()))
		return
	}
	for _, f := range fs {
		if _, stopped := autopilot.Stopped(pauses, f.Rule.Name, f.Backend.Target); !stopped {
			a.fire(ctx, f, channel)
		}
	}
}

func (a *Autopilot) fire(ctx context.Context, f autopilot.Firing, channel string) {
	r := f.Rule
	auto := &request.Auto{Rule: r.Name, Mode: string(r.Mode), Why: blocks.AutoWhy(r, f.Backend)}
	if r.Action == autopilot.CancelThenTerminate {
		auto.Escalate = r.EscalateAfter
	}
	// Once per statement execution: counting down now, or done (carried
	// out, stopped, a dry run shown). A key once made stays made, so this
	// process remembers it and asks the store no more.
	key := request.Request{Action: r.Action.First(), Backend: f.Backend, Auto: auto}.Key()
	if a.made.has(key) {
		return
	}
	if made, err := a.w.store.Made(ctx, key); err != nil || made {
		if made {
			a.made.add(key)
		}
		return
	}
	n, err := a.w.store.Fired(ctx, request.AutoPrefix(r.Name, f.Backend.Target), r.Window)
	if err != nil {
		a.w.log.Warn("autopilot: could not count the rule's firings; nothing fired", slog.String("rule", r.Name), slog.String("error", err.Error()))
		return
	}
	if n >= r.Limit {
		a.trip(ctx, r, f.Backend.Target, n, channel)
		return
	}
	a.request(ctx, auto, r.Action.First(), f.Backend, r.Countdown, channel)
}

// madeKeys are the keys of rules' requests this process knows were made.
// Bounded: past its size it starts again (the store still answers).
type madeKeys struct {
	mu   sync.Mutex
	keys map[string]bool
}

const madeKeysMax = 10000

func (m *madeKeys) has(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.keys[key]
}

func (m *madeKeys) add(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil || len(m.keys) >= madeKeysMax {
		m.keys = map[string]bool{}
	}
	m.keys[key] = true
}

// autoRequest records a rule's request, to be carried out countdown from
// now by the store's clock, and posts its card.
func (a *Autopilot) request(ctx context.Context, auto *request.Auto, action pg.Action, b pg.Backend, countdown time.Duration, channel string) {
	r := request.Request{Action: action, Backend: b, Requester: auto.Actor(), Channel: channel, Needed: 1, Auto: auto}
	got, created, err := a.w.store.Add(ctx, r, countdown+autoLate, countdown)
	if err != nil {
		a.w.log.Error("autopilot: could not record a rule's request", slog.String("rule", auto.Rule), slog.String("error", err.Error()))
		return
	}
	a.made.add(got.Key())
	if !created {
		return
	}
	a.w.metrics.Autopilot(auto.Rule, auto.Mode)
	a.w.audit(AuditRequest, auto.Actor(), got)
	a.w.cards.publish(ctx, got, "")
}

// trip stops rule on target: it fired limit times within its window. A
// card says so, once, and asks a person to look (and resume it).
func (a *Autopilot) trip(ctx context.Context, r autopilot.Rule, target string, n int, channel string) {
	reason := fmt.Sprintf("fired %d times on %s within %s (its limit: %d per %s)", n, target, blocks.Typed(r.Window), r.Limit, blocks.Typed(r.Window))
	tripped, err := a.pauses.Pause(ctx, autopilot.BreakerScope(r.Name, target), reason, "autopilot")
	if err != nil || !tripped {
		return
	}
	a.w.log.Warn("autopilot: a rule's breaker tripped", slog.String("rule", r.Name), slog.String("target", target), slog.Int("fired", n))
	a.w.metrics.Autopilot(r.Name, "breaker")
	a.w.out.Put(outbox.Item{Key: "breaker|" + r.Name + "|" + target, Channel: channel,
		Msg: blocks.Breaker(r.Name, target, reason, a.w.cfg.Command)})
}

// autoDue carries out a rule's request whose countdown has ended (by the
// store's clock) — through the same identity-checked statement as every
// request — or closes it: a dry run, a pause, or a card nobody saw.
func (a *Autopilot) due(ctx context.Context, r request.Request) {
	pctx, cancel := context.WithTimeout(ctx, request.CallTimeout)
	pauses, err := a.pauses.All(pctx)
	cancel()
	switch {
	case err != nil:
		a.w.log.Warn("autopilot: could not read its pauses; the next sweep retries", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		return
	case r.CardTS == "":
		a.w.close(ctx, r, request.Withdrawn, "its card was not posted (or not recorded as posted) before its countdown ended, so nobody could have stopped it: nothing was signalled")
		return
	default:
		if p, stopped := autopilot.Stopped(pauses, r.Auto.Rule, r.Backend.Target); stopped {
			a.w.close(ctx, r, request.Withdrawn, fmt.Sprintf("the autopilot is paused here (%s, by %s): nothing was signalled", p.Reason, p.By))
			return
		}
	}
	if r.Auto.DryRun() {
		a.w.close(ctx, r, request.Expired, fmt.Sprintf("dry run: rule %s would have %s pid %d now; nothing was signalled (its mode is dry-run)", r.Auto.Rule, pastTense(r.Action), r.Backend.PID))
		return
	}
	start := time.Now()
	got, err := a.w.store.Apply(ctx, r.ID, request.Event{Kind: request.Approve, User: r.Auto.Actor(), SelfApproval: true, Budget: a.w.cfg.Budget + a.w.cfg.Margin})
	if errors.Is(err, request.ErrUnsure) {
		a.w.unsure("", "the rule's approval", got, got.State == request.Approved, err)
		return
	}
	if err != nil {
		if !errors.Is(err, request.ErrDecided) && !errors.Is(err, request.ErrExpired) {
			a.w.log.Error("autopilot: could not record a rule's approval; the next sweep retries", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		}
		return
	}
	a.w.carryOut(ctx, got, start, r.Auto.Actor())
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
	w.cards.refresh(r) // "approved, signalling…"
	done := w.execute(ctx, r, start)
	w.audit(AuditOutcome, actor, done)
	w.metrics.Signal(string(done.Action), done.Word())
	if done.Outcome.Result == pg.Sent && done.VerifyErr == "" {
		w.metrics.Verified(string(done.Action), done.Verified.After)
	}
	w.cards.refresh(done)
	if a := done.Auto; a != nil && a.Escalate > 0 && done.Action == pg.Cancel && done.Outcome.Result == pg.Sent && !done.Verified.Ended {
		next := &request.Auto{Rule: a.Rule, Mode: a.Mode, Why: fmt.Sprintf("still running after the cancel of %s", done.ID)}
		w.auto.request(ctx, next, pg.Terminate, done.Backend, a.Escalate, done.Channel)
	}
}

// Stop handles Stop on a rule's card: anyone who may see the target may
// stop the autopilot's request before its countdown ends.
func (a *Autopilot) Stop(ctx context.Context, c Click, id string) {
	r, err := a.w.store.Get(ctx, id)
	switch {
	case errors.Is(err, request.ErrUnknown):
		a.w.Tell(c.ResponseURL, unknownRequest)
		return
	case err != nil:
		a.w.storeFailed(c.ResponseURL, "read the request", err)
		return
	case r.Auto == nil:
		a.w.Tell(c.ResponseURL, ":warning: that button is not one pgkill understands; run the command again.")
		return
	}
	if !a.w.may(ctx, c, policy.Stop, "stop "+r.ID, r.Targets()) || !a.w.onCard(ctx, c, r) {
		return // the policy first: nothing is said about the card before it
	}
	a.w.decide(ctx, c, id, request.Event{Kind: request.Deny, User: c.User}, AuditDeny)
}

func pastTense(a pg.Action) string {
	if a == pg.Cancel {
		return "cancelled"
	}
	return "terminated"
}

// Pauses returns what stops the autopilot now.
func (a *Autopilot) Pauses(ctx context.Context) ([]pg.PauseRow, error) { return a.pauses.All(ctx) }

// Pause stops every rule on target ("" for every target) until a person
// resumes it, across replicas and restarts: an approver of every target it
// covers only. It says so in channel (the alert channel) and to the user.
func (a *Autopilot) Pause(ctx context.Context, c Click, target string, targets []string, channel string) {
	scope, where := autopilot.All, "every target"
	if target != "" {
		scope, where, targets = autopilot.TargetScope(target), target, []string{target}
	}
	if !a.w.may(ctx, c, policy.Approve, "autopilot pause", targets) {
		return
	}
	ok, err := a.pauses.Pause(ctx, scope, "paused by <@"+c.User+">", c.User)
	switch {
	case err != nil:
		a.w.storeFailed(c.ResponseURL, "pause the autopilot", err)
		return
	case !ok:
		a.w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: the autopilot is paused on %s already. `%s autopilot` shows by whom.", where, a.w.cfg.Command))
		return
	}
	a.notice(channel, c.User, "paused", where)
	a.w.Tell(c.ResponseURL, fmt.Sprintf(":double_vertical_bar: the autopilot is paused on %s: no rule acts there (countdowns under way end without a signal) until `%s autopilot resume%s`.", where, a.w.cfg.Command, suffix(target)))
}

// Resume ends a pause of target ("" for every target), or rule's breaker
// on target when rule is set: an approver of every target it covers only.
func (a *Autopilot) Resume(ctx context.Context, c Click, rule, target string, targets []string, channel string) {
	scope, where := autopilot.All, "every target"
	switch {
	case rule != "":
		scope, where, targets = autopilot.BreakerScope(rule, target), fmt.Sprintf("rule %s on %s", rule, target), []string{target}
	case target != "":
		scope, where, targets = autopilot.TargetScope(target), target, []string{target}
	}
	if !a.w.may(ctx, c, policy.Approve, "autopilot resume", targets) {
		return
	}
	ok, err := a.pauses.Resume(ctx, scope)
	switch {
	case err != nil:
		a.w.storeFailed(c.ResponseURL, "resume the autopilot", err)
		return
	case !ok:
		a.w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: nothing to resume: the autopilot is not paused on %s (`%s autopilot` shows what is).", where, a.w.cfg.Command))
		return
	}
	a.notice(channel, c.User, "resumed", where)
	a.w.Tell(c.ResponseURL, fmt.Sprintf(":arrow_forward: the autopilot acts again on %s.", where))
}

// autoNotice records a pause or a resume: in the log as an audit record,
// and as a line in the alert channel.
func (a *Autopilot) notice(channel, user, what, where string) {
	a.w.log.Info("audit", slog.String("event", "autopilot-"+what), slog.String("actor", user), slog.String("scope", where))
	if channel != "" {
		a.w.out.Put(outbox.Item{Key: fmt.Sprintf("autopilot|%s|%s|%d", what, where, time.Now().UnixNano()), Channel: channel,
			Msg: blocks.Notice(fmt.Sprintf(":robot_face: the autopilot was %s on %s by %s.", what, blocks.Escape(where), blocks.Mentions([]string{user})))})
	}
}

func suffix(target string) string {
	if target == "" {
		return ""
	}
	return " " + target
}
