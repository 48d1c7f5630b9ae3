package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

const unknownRequest = ":information_source: pgkill does not know this request (it may have restarted since, without a state store): nothing was signalled. List again and make a new request."

// Approve handles Approve on a request's card: approvers only, not one's
// own request unless PGKILL_SELF_APPROVAL, never after it expired by the
// store's clock; with several approvals needed each approver's is a step of
// its own, and only the last one approves it — so of concurrent final
// clicks exactly one carries it out. That one signals with the identity
// check, verifies and records the outcome before anything waits on Slack.
func (w *Workflow) Approve(ctx context.Context, c Click, id string) {
	if _, ok := w.decidable(ctx, c, id); !ok {
		return
	}
	// The signal's time is counted from before the approval is written: the
	// store's deadline for it is later than this process's, whatever the
	// clocks say.
	start := time.Now()
	r, err := w.store.Apply(ctx, id, request.Event{Kind: request.Approve, User: c.User, SelfApproval: w.cfg.SelfApproval, Budget: w.cfg.Budget + w.cfg.Margin})
	switch {
	case errors.Is(err, request.ErrSelf):
		w.Tell(c.ResponseURL, ":no_entry: you asked for this, so another approver must approve it (PGKILL_SELF_APPROVAL is off).")
		return
	case errors.Is(err, request.ErrExpired):
		w.expire(ctx, id)
		w.Tell(c.ResponseURL, fmt.Sprintf(":hourglass: request %s expired before your approval: nothing was signalled. List again and make a new request if it is still needed.", id))
		return
	case errors.Is(err, request.ErrDryRun):
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: request %s is a dry run: its rule's mode is dry-run, so nothing is signalled. Set the rule's mode: act in the policy file for it to act, or list the target and ask for this session.", id))
		return
	case errors.Is(err, request.ErrVoted):
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: you have approved request %s already; it needs %d of %d approvals from different approvers.", id, r.NeedsVotes()-len(r.Votes), r.NeedsVotes()))
		return
	case errors.Is(err, request.ErrDecided):
		w.tellDecided(c.ResponseURL, w.settled(ctx, r))
		return
	case errors.Is(err, request.ErrUnsure):
		w.unsure(c.ResponseURL, "your approval", r, r.State == request.Approved, err)
		return
	case err != nil:
		w.storeFailed(c.ResponseURL, "record the approval", err)
		return
	}
	if r.State != request.Approved {
		w.audit(AuditApprove, c.User, r)
		w.cards.refresh(r) // "1 of 2 approvals"
		return
	}
	w.carryOut(ctx, r, start, c.User)
}

// Deny handles Deny: approvers only.
func (w *Workflow) Deny(ctx context.Context, c Click, id string) {
	if _, ok := w.decidable(ctx, c, id); !ok {
		return
	}
	w.decide(ctx, c, id, request.Event{Kind: request.Deny, User: c.User}, AuditDeny)
}

// Withdraw handles Withdraw: its requester only, while the policy lets
// them request there.
func (w *Workflow) Withdraw(ctx context.Context, c Click, id string) {
	r, err := w.store.Get(ctx, id)
	switch {
	case errors.Is(err, request.ErrUnknown):
		w.Tell(c.ResponseURL, unknownRequest)
		return
	case err != nil:
		w.storeFailed(c.ResponseURL, "read the request", err)
		return
	}
	if !w.may(ctx, c, policy.Request, "withdraw "+r.ID, r.Targets()) || !w.onCard(ctx, c, r) {
		return // the policy first: nothing about the card or who asked before it
	}
	w.decide(ctx, c, id, request.Event{Kind: request.Withdraw, User: c.User}, AuditWithdraw)
}

// decide ends a pending request without a signal (deny, withdraw).
func (w *Workflow) decide(ctx context.Context, c Click, id string, e request.Event, event string) {
	r, err := w.store.Apply(ctx, id, e)
	switch {
	case errors.Is(err, request.ErrNotYours):
		w.Tell(c.ResponseURL, fmt.Sprintf(":no_entry: only %s, who asked, may withdraw request %s.", blocks.Mentions([]string{r.Requester}), r.ID))
		return
	case errors.Is(err, request.ErrDecided):
		w.tellDecided(c.ResponseURL, w.settled(ctx, r))
		return
	case errors.Is(err, request.ErrUnsure):
		w.unsure(c.ResponseURL, "your decision", r, false, err)
		return
	case err != nil:
		w.storeFailed(c.ResponseURL, "record the decision", err)
		return
	}
	w.audit(event, c.User, r)
	w.metrics.Decision(string(r.State))
	w.cards.refresh(r)
}

// expire ends a request nobody decided in time (by the store's clock). Any
// process may call it, as often as it likes: only one expiry wins.
func (w *Workflow) expire(ctx context.Context, id string) {
	r, err := w.store.Apply(ctx, id, request.Event{Kind: request.Expire})
	if err != nil {
		if !errors.Is(err, request.ErrDecided) && !errors.Is(err, request.ErrNotDue) {
			w.log.Error("could not expire a request; the next sweep retries", slog.String("request_id", id), slog.String("error", err.Error()))
		}
		return
	}
	w.audit(AuditExpire, "", r)
	w.metrics.Decision("expired")
	w.cards.refresh(r)
}

// decidable checks that request id exists, that the clicker may approve on
// every target it touches (before anything else is said of it), that the
// click comes from its card, and that this replica knows its targets.
func (w *Workflow) decidable(ctx context.Context, c Click, id string) (request.Request, bool) {
	r, err := w.store.Get(ctx, id)
	switch {
	case errors.Is(err, request.ErrUnknown):
		w.Tell(c.ResponseURL, unknownRequest)
		return r, false
	case err != nil:
		w.storeFailed(c.ResponseURL, "read the request", err)
		return r, false
	}
	if !w.may(ctx, c, policy.Approve, "decide "+r.ID, r.Targets()) {
		return r, false
	}
	if !w.onCard(ctx, c, r) {
		return r, false
	}
	for _, t := range r.Targets() {
		if !w.inFleet(t) {
			w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: the pgkill replica that got this click does not know target %s (it left the fleet, or this replica has not discovered it yet): nothing was decided. Press again: another replica may take it, and a request on a target that has left every replica's fleet is closed on its own.", blocks.Escape(t)))
			return r, false
		}
	}
	return r, true
}

// cardRecordWait bounds how long a click waits for its card's ts to be
// recorded (onCard).
const cardRecordWait = 5 * time.Second

// onCard checks that a click on a request's button comes from the message
// recorded as that request's card: a button value names a request, and the
// same value pressed anywhere else (a forged message, a copy) is no
// authority. It tells the user when not.
func (w *Workflow) onCard(ctx context.Context, c Click, r request.Request) bool {
	// A click can come while the card's ts is being recorded by the process
	// that posted it (the card is on screen before that): wait for it, briefly.
	for wait := time.Duration(0); r.CardTS == "" && wait < cardRecordWait; wait += 100 * time.Millisecond {
		if sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
		if got, err := w.store.Get(ctx, r.ID); err == nil {
			r = got
		}
	}
	switch {
	case r.CardTS == "":
		w.Tell(c.ResponseURL, fmt.Sprintf(":hourglass: request %s's card is still being posted: press the button again on the card in a moment. Nothing was decided.", r.ID))
		return false
	case c.Channel != r.Channel || c.MessageTS != r.CardTS:
		w.log.Warn("a click on a request's button from another message was refused", slog.String("request_id", r.ID),
			slog.String("user", c.User), slog.String("channel", c.Channel))
		if r.Reposted && c.Channel == r.Channel && r.ThreadTS != "" && c.Thread == r.ThreadTS && c.MessageTS != c.Thread {
			// A reply in the thread of a request posted more than once,
			// whose button names it: an earlier card of it (Slack delivers
			// a click only with the button that message has), which loses
			// its buttons. The listing or alert the thread hangs from is
			// never touched, nor the card of a request of the same ID
			// before a restart without a state store (never reposted).
			w.out.Put(outbox.Item{Key: "stale|" + c.MessageTS, Channel: c.Channel, TS: c.MessageTS, Msg: blocks.StaleCard(r.ID)})
		}
		w.Tell(c.ResponseURL, fmt.Sprintf(":no_entry: this button is not on request %s's card: only the card pgkill posted for it decides it. Use the card in the thread where it was requested. Nothing was decided.", r.ID))
		return false
	}
	return true
}

func (w *Workflow) tellDecided(url string, r request.Request) {
	who := ""
	if r.Decider != "" {
		who = " by " + blocks.Mentions([]string{r.Decider})
	}
	w.Tell(url, fmt.Sprintf(":information_source: request %s is already %s%s; nothing more happens.", r.ID, r.State, who))
}

// Next handles "Terminate the N still running" on a bulk cancel's outcome:
// a new bulk request, with its own approval, for exactly those. It returns
// the click as a Terminate all of that set, for the caller to carry on as
// any (it asks for a reason where one is asked for).
//
// Only a requester of every target those sessions are on may press it, and
// only on a bulk cancel that is done with some still running: nothing is
// written, or said of them, otherwise.
func (w *Workflow) Next(ctx context.Context, c Click, id string) (Click, bool) {
	r, err := w.store.Get(ctx, id)
	switch {
	case errors.Is(err, request.ErrUnknown):
		w.Tell(c.ResponseURL, unknownRequest)
		return c, false
	case err != nil:
		w.storeFailed(c.ResponseURL, "read the request", err)
		return c, false
	}
	still := r.StillRunning()
	touched := still
	if len(touched) == 0 {
		touched = r.Members
	}
	if !w.may(ctx, c, policy.Request, "terminate the still running of "+r.ID, targetsOf(touched)) {
		return c, false
	}
	if !w.onCard(ctx, c, r) {
		return c, false
	}
	if r.State != request.Done || !r.Bulk() || r.Action != pg.Cancel || len(still) == 0 {
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: request %s is not a finished cancel with sessions still running: there is nothing to terminate after it. Nothing was requested.", r.ID))
		return c, false
	}
	set := request.Set{Scope: fmt.Sprintf("the %d still running after %s", len(still), r.ID), Members: still, At: r.Decided}
	setID, err := w.sets.Put(ctx, set)
	if err != nil {
		w.storeFailed(c.ResponseURL, "keep the sessions still running", err)
		return c, false
	}
	c.Thread = r.ThreadTS
	if c.Thread == "" {
		c.Thread = r.CardTS
	}
	c.Value = blocks.EncodeBulk(blocks.Bulk{Action: pg.Terminate, SetID: setID})
	return c, true
}

// KeepSet keeps set for Cancel all / Terminate all buttons: its ID and
// size, or "" (no buttons) when it has no member or could not be kept.
func (w *Workflow) KeepSet(ctx context.Context, set request.Set) (string, int) {
	if len(set.Members) == 0 {
		return "", 0
	}
	id, err := w.sets.Put(ctx, set)
	if err != nil {
		w.log.Error("could not keep a set of sessions: no Cancel all", slog.String("error", err.Error()))
		return "", 0
	}
	return id, len(set.Members)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
