package bot

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/pg"
)

// sameExecution compares the parts of an identity that pin one statement
// execution on one server.
func sameExecution(a, b pg.Identity) bool {
	return a.PID == b.PID && a.BackendStart.Equal(b.BackendStart) && a.QueryStart.Equal(b.QueryStart) && a.ServerStart.Equal(b.ServerStart)
}

// errExpired aborts an approval that comes after the request's expiry;
// errVoted one from an approver who has approved already.
var (
	errExpired = errors.New("request expired")
	errVoted   = errors.New("approved already")
)

// Approve handles Approve: approvers only, not one's own request unless
// PGKILL_SELF_APPROVAL, never after the request expired; exactly one
// approval wins. The winner signals with the identity check, verifies and
// records the outcome first, and only then tells Slack: a slow or hung
// Slack never delays the signal.
func (b *Bot) Approve(ctx context.Context, cb slack.InteractionCallback, id string) {
	a, ok := b.decidable(ctx, cb, id)
	if !ok {
		return
	}
	user := cb.User.ID
	if a.Requester == user && !b.cfg.SelfApproval {
		b.tell(ctx, cb.ResponseURL, ":no_entry: you asked for this, so another approver must approve it (PGKILL_SELF_APPROVAL is off).")
		return
	}
	// The expiry is checked in the step itself, on the latest version: a
	// timer may never have fired here (another process made the request, or
	// the pending→expired step failed). With several approvals needed, each
	// approver's vote is a step of its own, and only the last one moves the
	// request to approved — so concurrent final clicks still signal once.
	var final bool
	a, stored, err := b.requests.apply(ctx, id, func(x *Approval) (bool, error) {
		final = false
		switch {
		case x.State != Pending:
			return false, nil
		case !b.now().Before(x.Expires):
			return false, errExpired
		case x.voted(user):
			return false, errVoted
		}
		x.Votes = append(x.Votes, Vote{User: user, At: b.now()})
		if len(x.Votes) >= x.needed() {
			x.State, x.Decider, x.Decided, final = Approved, user, b.now(), true
		}
		return true, nil
	})
	switch {
	case errors.Is(err, errExpired):
		b.Expire(ctx, id)
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":hourglass: request %s expired before your approval: nothing was signalled. List again and make a new request if it is still needed.", id))
		return
	case errors.Is(err, errVoted):
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":information_source: you have approved request %s already; it needs %d of %d approvals from different approvers.", id, a.needed()-len(a.Votes), a.needed()))
		return
	case err != nil:
		b.storeFailed(ctx, cb.ResponseURL, "record the approval", err)
		return
	case !stored:
		b.tellDecided(ctx, cb.ResponseURL, a)
		return
	case !final:
		b.audit(ctx, AuditApprove, user, a)
		b.refreshCard(ctx, a) // "1 of 2 approvals"
		return
	}
	b.audit(ctx, AuditApprove, user, a)
	b.metrics.decision("approved")
	b.goWork(func(ctx context.Context) { b.refreshCard(ctx, a) }) // "approved, signalling…", in parallel

	done := b.execute(ctx, a)
	b.audit(ctx, AuditOutcome, user, done)
	b.metrics.signal(string(done.Action), outcomeWord(done))
	if done.Outcome.Result == pg.Sent {
		b.metrics.verified(string(done.Action), done.Verified.After)
	}
	b.refreshCard(ctx, done)
}

// execute signals an approved request's backend (or set), verifies, and
// records the outcome (approved → done). It never talks to Slack.
func (b *Bot) execute(ctx context.Context, a Approval) Approval {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.executeBudget())
	defer cancel()
	if a.bulk() {
		return b.executeBulk(ctx, a)
	}
	out, err := b.db.Signal(ctx, a.Action, a.Backend.Identity)
	var v pg.Verification
	var verr error
	if err == nil && out.Result == pg.Sent {
		v, verr = b.db.Verify(ctx, out, b.cfg.VerifyTimeout)
	}
	return b.finish(ctx, a, func(x *Approval) {
		x.Outcome, x.Verified = out, v
		switch {
		case errors.Is(err, errNothingSent):
			x.NotSent = err.Error()
		case err != nil:
			x.Err = err.Error()
		}
		if verr != nil { // the signal was sent: only watching it failed
			x.VerifyErr = verr.Error()
		}
	})
}

// finish records an approved request's outcome (approved → done). The
// signal happened: the outcome is reported even if the store cannot record it.
func (b *Bot) finish(ctx context.Context, a Approval, record func(*Approval)) Approval {
	// Its own budget: the signal happened whatever time the execution took.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordBudget)
	defer cancel()
	done, won, serr := b.requests.transition(ctx, a.ID, Approved, Done, func(x *Approval) error { record(x); return nil })
	if serr != nil || !won {
		if serr != nil {
			b.log.Error("could not record the outcome of a request", slog.String("request_id", a.ID), slog.String("error", serr.Error()))
		} else {
			b.log.Error("the outcome of a request was recorded elsewhere first", slog.String("request_id", a.ID), slog.String("state", string(done.State)))
		}
		done = a
		done.State = Done
		record(&done)
	}
	return done
}

// Deny handles Deny: approvers only.
func (b *Bot) Deny(ctx context.Context, cb slack.InteractionCallback, id string) {
	if _, ok := b.decidable(ctx, cb, id); !ok {
		return
	}
	b.decide(ctx, cb, id, Denied, AuditDeny, func(x *Approval) error { x.Decider, x.Decided = cb.User.ID, b.now(); return nil })
}

// Withdraw handles Withdraw: only the requester.
func (b *Bot) Withdraw(ctx context.Context, cb slack.InteractionCallback, id string) {
	a, ok, err := b.requests.get(ctx, id)
	switch {
	case err != nil:
		b.storeFailed(ctx, cb.ResponseURL, "read the request", err)
		return
	case !ok:
		b.tell(ctx, cb.ResponseURL, unknownRequest)
		return
	case !b.onCard(ctx, cb, a):
		return
	case a.Requester != cb.User.ID:
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":no_entry: only %s, who asked, may withdraw request %s.", blocks.Mentions([]string{a.Requester}), a.ID))
		return
	}
	b.decide(ctx, cb, id, Withdrawn, AuditWithdraw, func(x *Approval) error { x.Decided = b.now(); return nil })
}

// decide ends a pending request without a signal (deny, withdraw).
func (b *Bot) decide(ctx context.Context, cb slack.InteractionCallback, id string, to State, event string, change func(*Approval) error) {
	a, won, err := b.requests.transition(ctx, id, Pending, to, change)
	switch {
	case err != nil:
		b.storeFailed(ctx, cb.ResponseURL, "record the decision", err)
		return
	case !won:
		b.tellDecided(ctx, cb.ResponseURL, a)
		return
	}
	b.audit(ctx, event, cb.User.ID, a)
	b.metrics.decision(string(to))
	b.refreshCard(ctx, a)
}

// Expire ends a request nobody decided in time. Any process may call it,
// as often as it likes: only one expiry wins (the housekeeping sweep retries
// one that failed).
func (b *Bot) Expire(ctx context.Context, id string) {
	a, ok, err := b.requests.transition(ctx, id, Pending, Expired, func(x *Approval) error { x.Decided = b.now(); return nil })
	if err != nil {
		b.log.Error("could not expire a request; the next sweep retries", slog.String("request_id", id), slog.String("error", err.Error()))
		return
	}
	if !ok {
		return
	}
	b.audit(ctx, AuditExpire, "", a)
	b.metrics.decision("expired")
	b.refreshCard(ctx, a)
}

const unknownRequest = ":information_source: pgkill does not know this request (it may have restarted since, without a state store): nothing was signalled. List again and make a new request."

// decidable checks that id exists, that the click comes from its card and
// that the clicker is an approver.
func (b *Bot) decidable(ctx context.Context, cb slack.InteractionCallback, id string) (Approval, bool) {
	a, ok, err := b.requests.get(ctx, id)
	if err != nil {
		b.storeFailed(ctx, cb.ResponseURL, "read the request", err)
		return a, false
	}
	if !ok {
		b.tell(ctx, cb.ResponseURL, unknownRequest)
		return a, false
	}
	if !b.onCard(ctx, cb, a) {
		return a, false
	}
	for _, t := range a.targets() { // a bulk request: an approver of every target it touches
		if d := b.policy.May(ctx, policy.Approve, cb.User.ID, cb.Channel.ID, t); !d.Allowed {
			b.refuse(ctx, cb.ResponseURL, cb.User.ID, cb.Channel.ID, "decide "+a.ID, a.targets(), d.Why)
			return a, false
		}
	}
	return a, true
}

// onCard checks that a click on a request's button comes from the message
// recorded as that request's card: a button value names a request, and the
// same value pressed anywhere else (a forged message, a copy) is no
// authority. It tells the user when not.
func (b *Bot) onCard(ctx context.Context, cb slack.InteractionCallback, a Approval) bool {
	// A click can come while the card's ts is being recorded by the process
	// that posted it (the card is on screen before that): wait for it, briefly.
	for wait := time.Duration(0); a.CardTS == "" && wait < cardRecordWait; wait += 100 * time.Millisecond {
		if sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
		if got, ok, err := b.requests.get(ctx, a.ID); err == nil && ok {
			a = got
		}
	}
	switch {
	case a.CardTS == "":
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":hourglass: request %s's card is still being posted: press the button again on the card in a moment. Nothing was decided.", a.ID))
		return false
	case cb.Channel.ID != a.Channel || cb.Container.MessageTs != a.CardTS:
		b.log.Warn("a click on a request's button from another message was refused", slog.String("request_id", a.ID),
			slog.String("user", cb.User.ID), slog.String("channel", cb.Channel.ID))
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":no_entry: this button is not on request %s's card: only the card pgkill posted for it decides it. Use the card in the thread where it was requested. Nothing was decided.", a.ID))
		return false
	}
	return true
}

func (b *Bot) storeFailed(ctx context.Context, responseURL, what string, err error) {
	b.log.Error("state store failed", slog.String("doing", what), slog.String("error", err.Error()))
	b.tell(ctx, responseURL, ":x: pgkill could not "+what+" (state store: "+blocks.Escape(err.Error())+"). Nothing was signalled; try again.")
}

func (b *Bot) tellDecided(ctx context.Context, responseURL string, a Approval) {
	who := ""
	if a.Decider != "" {
		who = " by " + blocks.Mentions([]string{a.Decider})
	}
	b.tell(ctx, responseURL, fmt.Sprintf(":information_source: request %s is already %s%s; nothing more happens.", a.ID, a.State, who))
}

func (b *Bot) card(a Approval) blocks.Message {
	return blocks.RequestMessage(a.view(b.policy.Policy().For(a.Backend.Target).Approvers))
}

// refreshCard shows a request's latest state on its card. Updates of one
// card run one at a time, and each shows the latest state known — the
// stored one, or a (when the store could not record it) — so an update
// that was slow to run never puts an older state back on the card.
func (b *Bot) refreshCard(ctx context.Context, a Approval) {
	// Bounded: a hung chat.update must not hold the card's turn for ever.
	ctx, cancel := context.WithTimeout(ctx, cardTimeout)
	defer cancel()
	mu := &b.cardLocks[stripe(a.ID, len(b.cardLocks))]
	mu.Lock()
	defer mu.Unlock()
	if got, ok, _ := b.requests.get(ctx, a.ID); ok {
		if stage(got.State) >= stage(a.State) {
			a = got
		} else if a.CardTS == "" {
			a.CardTS = got.CardTS
		}
	}
	if a.CardTS == "" {
		b.repostCard(ctx, a)
		return
	}
	if err := b.update(ctx, a.Channel, a.CardTS, b.card(a)); err != nil {
		b.log.Error("could not update the request card", slog.String("request_id", a.ID), slog.String("error", err.Error()))
	}
}

// cardLost is how long after a request a card whose ts was never recorded
// counts as lost: its process posted it and stopped before it could record
// where (a SIGKILL in that instant).
const cardLost = 10 * time.Second

// repostCard shows a decided request whose card was lost as a new card in
// its thread, and records that one, so its outcome is never invisible.
func (b *Bot) repostCard(ctx context.Context, a Approval) {
	if a.State == Pending || a.Channel == "" || b.now().Sub(a.Requested) < cardLost {
		return // the process that posted it is still recording it
	}
	ts, err := b.post(ctx, a.Channel, a.ThreadTS, b.card(a))
	if err != nil {
		return
	}
	_, _, _ = b.requests.apply(ctx, a.ID, func(x *Approval) (bool, error) {
		if x.CardTS != "" {
			return false, nil
		}
		x.CardTS = ts
		return true, nil
	})
	b.log.Warn("a request's card was lost (its process stopped before recording it): posted a new one", slog.String("request_id", a.ID))
}

// cardRecordWait bounds how long a click waits for its card's ts to be
// recorded (onCard).
const cardRecordWait = 5 * time.Second

// cardTimeout bounds one card update, the wait for its turn included.
const cardTimeout = 15 * time.Second

// stage orders states along the only ways through the state machine.
func stage(s State) int {
	switch s {
	case Pending:
		return 0
	case Approved:
		return 1
	}
	return 2
}

func stripe(id string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % uint32(n))
}

// sweepInterval is how often the housekeeping sweep runs: a small part of
// the approval TTL, so an expiry is at most that late.
func (c Config) sweepInterval() time.Duration {
	return min(max(c.ApprovalTTL/20, 200*time.Millisecond), 5*time.Second)
}

// executeBudget bounds an approval's signal and verification; recording
// its outcome gets recordBudget more. A live process therefore finishes an
// approval well within stuckAfter.
func (c Config) executeBudget() time.Duration { return c.shutdownGrace() }

const recordBudget = 15 * time.Second

// stuckAfter is how long a request may stay approved, unchanged, by the
// state store's clock: past it, the process that was signalling has
// stopped (it had executeBudget and recordBudget).
func (c Config) stuckAfter() time.Duration { return 2*c.executeBudget() + recordBudget }

// sweep runs the housekeeping until ctx ends. It is what expires requests:
// not a timer of the process that made them, which may be gone.
func (b *Bot) sweep(ctx context.Context) {
	t := time.NewTicker(b.cfg.sweepInterval())
	defer t.Stop()
	for {
		b.sweepOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepOnce expires every pending request past its expiry and finishes
// every approval a stopped process left in approved.
func (b *Bot) sweepOnce(ctx context.Context) {
	now := b.now()
	pending, err := b.requests.inState(ctx, Pending)
	if err != nil {
		b.log.Error("could not read pending requests; the next sweep retries", slog.String("error", err.Error()))
	}
	names := b.db.Names()
	for _, a := range pending {
		if gone := missing(a.targets(), names); gone != "" {
			b.closeLeft(ctx, a, gone)
		} else if !now.Before(a.Expires) {
			b.Expire(ctx, a.ID)
		}
	}
	approved, err := b.requests.abandoned(ctx, b.cfg.stuckAfter())
	if err != nil {
		b.log.Error("could not read approved requests; the next sweep retries", slog.String("error", err.Error()))
	}
	for _, a := range approved {
		b.abandoned(ctx, a)
	}
}

// missing returns the first of targets that is not in names, or "".
func missing(targets, names []string) string {
	for _, t := range targets {
		if !slices.Contains(names, t) {
			return t
		}
	}
	return ""
}

// closeLeft ends a pending request whose target left the fleet (the
// instance was deleted, or discovery no longer finds it): nothing can be
// signalled there, and the card says so at once instead of at expiry.
func (b *Bot) closeLeft(ctx context.Context, a Approval, target string) {
	done, won, err := b.requests.transition(ctx, a.ID, Pending, Expired, func(x *Approval) error {
		x.Decided = b.now()
		x.NotSent = fmt.Errorf("%w: %w", leftFleet(target), errNothingSent).Error()
		return nil
	})
	if err != nil || !won {
		return
	}
	b.audit(ctx, AuditExpire, "", done)
	b.metrics.decision("expired")
	b.refreshCard(ctx, done)
}

// abandoned finishes an approval whose process stopped between the approval
// and the record of its outcome. Whether the signal was sent is unknown,
// and the card says exactly that.
func (b *Bot) abandoned(ctx context.Context, a Approval) {
	done, won, err := b.requests.transition(ctx, a.ID, Approved, Done, func(x *Approval) error {
		x.Err = fmt.Sprintf("pgkill stopped while it was signalling this request (approved %s ago): the signal may or may not have been sent. List again to see whether the query still runs.", blocks.Duration(b.now().Sub(x.Decided)))
		return nil
	})
	if err != nil || !won {
		return
	}
	b.log.Warn("finished an abandoned approval", slog.String("request_id", a.ID))
	b.audit(ctx, AuditOutcome, "", done)
	b.metrics.signal(string(done.Action), outcomeWord(done))
	b.refreshCard(ctx, done)
}
