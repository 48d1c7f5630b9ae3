package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// Request handles a Cancel or Terminate click: it checks the requester and
// that the backend still runs the listed query, then posts an approval card
// in the thread. Nothing is signalled here.
func (b *Bot) Request(ctx context.Context, cb slack.InteractionCallback, value string) {
	sig, err := blocks.DecodeSignal(value)
	if err != nil {
		b.tell(ctx, cb.ResponseURL, ":warning: that button is not one pgkill understands; run the command again.")
		return
	}
	user := cb.User.ID
	if ok, err := b.access.mayRequest(ctx, user); !ok {
		b.tell(ctx, cb.ResponseURL, ":no_entry: only "+blocks.Mentions(b.cfg.Requesters)+" may ask to cancel or terminate queries."+lookupNote(err))
		return
	}
	cur, err := b.db.Backend(ctx, sig.Target, sig.PID)
	switch {
	case errors.Is(err, pg.ErrNotFound) || (err == nil && !sameExecution(cur.Identity, sig.Identity)):
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":information_source: pid %d on %s is no longer running that query: nothing to approve. Press *Refresh* for the current state.", sig.PID, blocks.Escape(sig.Target)))
		return
	case err != nil:
		b.tell(ctx, cb.ResponseURL, ":x: could not read the backend: "+blocks.Escape(err.Error()))
		return
	case !cur.Signallable():
		b.tell(ctx, cb.ResponseURL, ":lock: pgkill will not signal this backend: "+blocks.Escape(cur.Protected))
		return
	case sig.Action == pg.Cancel && cur.State != pg.StateActive:
		b.tell(ctx, cb.ResponseURL, ":information_source: the session is "+string(cur.State)+": cancel would do nothing there. Use *Terminate*.")
		return
	}
	cur.Identity = sig.Identity // the identity that was shown is the one approved
	thread := cb.Container.ThreadTs
	if thread == "" {
		thread = cb.Message.ThreadTimestamp
	}
	if thread == "" {
		thread = cb.Container.MessageTs
	}
	now := b.now()
	a, created, err := b.requests.add(ctx, Approval{
		Action: sig.Action, Backend: cur, Requester: user, Channel: cb.Channel.ID, ThreadTS: thread,
		Requested: now, Expires: now.Add(b.cfg.ApprovalTTL),
	})
	if err != nil {
		b.storeFailed(ctx, cb.ResponseURL, "record the request", err)
		return
	}
	if !created {
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":information_source: request %s to %s this backend is already waiting for approval.", a.ID, a.Action))
		return
	}
	b.audit(ctx, AuditRequest, user, a)
	b.metrics.request(string(a.Action))
	ts, err := b.post(ctx, a.Channel, a.ThreadTS, b.card(a))
	if err != nil {
		if a, ok, _ := b.requests.transition(ctx, a.ID, Pending, Withdrawn, func(x *Approval) { x.Decided = b.now() }); ok {
			b.audit(ctx, AuditWithdraw, "pgkill", a)
		}
		b.tell(ctx, cb.ResponseURL, ":x: pgkill could not post the approval request, so it is withdrawn: "+blocks.Escape(err.Error()))
		return
	}
	if err := b.requests.update(ctx, a.ID, func(x *Approval) { x.CardTS = ts }); err != nil {
		b.log.Error("could not record the card of a request", slog.String("request_id", a.ID), slog.String("error", err.Error()))
	}
	// A click may have decided the request while its card was being posted,
	// before its ts was known: show that decision now.
	if cur, ok, _ := b.requests.get(ctx, a.ID); ok && cur.State != Pending {
		b.refreshCard(ctx, cur)
	}
	b.expireAt(a.ID, a.Expires)
}

// expireAt arranges for request id to expire at t.
func (b *Bot) expireAt(id string, t time.Time) {
	time.AfterFunc(max(0, t.Sub(b.now())), func() {
		if b.work.Err() != nil { // this bot has stopped; the next run re-arms pending requests
			return
		}
		b.goWork(func(ctx context.Context) { b.Expire(ctx, id) })
	})
}

// sameExecution compares the parts of an identity that pin one statement
// execution on one server.
func sameExecution(a, b pg.Identity) bool {
	return a.PID == b.PID && a.BackendStart.Equal(b.BackendStart) && a.QueryStart.Equal(b.QueryStart) && a.ServerStart.Equal(b.ServerStart)
}

// Approve handles Approve: approvers only, not one's own request unless
// PGKILL_SELF_APPROVAL; exactly one approval wins. The winner signals with
// the identity check, verifies, and updates the card in place.
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
	a, won, err := b.requests.transition(ctx, id, Pending, Approved, func(x *Approval) { x.Decider, x.Decided = user, b.now() })
	if err != nil {
		b.storeFailed(ctx, cb.ResponseURL, "record the approval", err)
		return
	}
	if !won {
		b.tellDecided(ctx, cb.ResponseURL, a)
		return
	}
	b.audit(ctx, AuditApprove, user, a)
	b.metrics.decision("approved")
	b.refreshCard(ctx, a)

	out, err := b.db.Signal(ctx, a.Action, a.Backend.Identity)
	var v pg.Verification
	if err == nil && out.Result == pg.Sent {
		v, err = b.db.Verify(ctx, out, b.cfg.VerifyTimeout)
	}
	finish := func(x *Approval) {
		x.Outcome, x.Verified = out, v
		if err != nil {
			x.Err = err.Error()
		}
	}
	done, _, serr := b.requests.transition(ctx, id, Approved, Done, finish)
	if serr != nil { // the signal happened: report it even if the store cannot record it
		b.log.Error("could not record the outcome of a request", slog.String("request_id", id), slog.String("error", serr.Error()))
		done = a
		done.State = Done
		finish(&done)
	}
	b.audit(ctx, AuditOutcome, user, done)
	b.metrics.signal(string(done.Action), outcomeWord(done))
	if done.Outcome.Result == pg.Sent {
		b.metrics.verified(string(done.Action), done.Verified.After)
	}
	b.refreshCard(ctx, done)
}

// Deny handles Deny: approvers only.
func (b *Bot) Deny(ctx context.Context, cb slack.InteractionCallback, id string) {
	if _, ok := b.decidable(ctx, cb, id); !ok {
		return
	}
	b.decide(ctx, cb, id, Denied, AuditDeny, func(x *Approval) { x.Decider, x.Decided = cb.User.ID, b.now() })
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
	case a.Requester != cb.User.ID:
		b.tell(ctx, cb.ResponseURL, fmt.Sprintf(":no_entry: only %s, who asked, may withdraw request %s.", blocks.Mentions([]string{a.Requester}), a.ID))
		return
	}
	b.decide(ctx, cb, id, Withdrawn, AuditWithdraw, func(x *Approval) { x.Decided = b.now() })
}

// decide ends a pending request without a signal (deny, withdraw).
func (b *Bot) decide(ctx context.Context, cb slack.InteractionCallback, id string, to State, event string, change func(*Approval)) {
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

// Expire ends a request nobody decided in time.
func (b *Bot) Expire(ctx context.Context, id string) {
	a, ok, err := b.requests.transition(ctx, id, Pending, Expired, func(x *Approval) { x.Decided = b.now() })
	if err != nil {
		b.log.Error("could not expire a request; retrying in a minute", slog.String("request_id", id), slog.String("error", err.Error()))
		b.expireAt(id, b.now().Add(time.Minute))
		return
	}
	if !ok {
		return
	}
	b.audit(ctx, AuditExpire, "pgkill", a)
	b.metrics.decision("expired")
	b.refreshCard(ctx, a)
}

const unknownRequest = ":information_source: pgkill does not know this request (it may have restarted since, without a state store): nothing was signalled. List again and make a new request."

// decidable checks that id exists and that the clicker is an approver.
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
	if ok, err := b.access.mayApprove(ctx, cb.User.ID); !ok {
		b.tell(ctx, cb.ResponseURL, ":no_entry: only approvers ("+blocks.Mentions(b.cfg.Approvers)+") may approve or deny requests."+lookupNote(err))
		return a, false
	}
	return a, true
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

func lookupNote(err error) string {
	if err == nil {
		return ""
	}
	return " (pgkill could not check user-group membership: " + blocks.Escape(err.Error()) + ")"
}

func (b *Bot) card(a Approval) blocks.Message {
	return blocks.RequestMessage(a.view(b.cfg.Approvers))
}

// refreshCard shows a request's current state on its card.
func (b *Bot) refreshCard(ctx context.Context, a Approval) {
	if a.CardTS == "" {
		if got, ok, _ := b.requests.get(ctx, a.ID); ok {
			a.CardTS = got.CardTS
		}
	}
	if a.CardTS == "" {
		return
	}
	if err := b.update(ctx, a.Channel, a.CardTS, b.card(a)); err != nil {
		b.log.Error("could not update the request card", slog.String("request_id", a.ID), slog.String("error", err.Error()))
	}
}
