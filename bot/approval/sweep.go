package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/request"
)

// Sweep runs the housekeeping until ctx ends. It is what expires requests
// and closes abandoned ones, by the store's clock — not a timer of the
// process that made them, which may be gone.
func (w *Workflow) Sweep(ctx context.Context) {
	t := time.NewTicker(w.cfg.Sweep)
	defer t.Stop()
	for {
		w.SweepOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepOnce first writes the outcomes this process knows and could not
// record before (settle); then it acts on every request due by the store's
// clock: a pending one past its expiry expires; one whose card was never
// recorded, and that no live process still posts, is withdrawn; an approved one whose signaller did not record
// what it did in time (unless that is this process, which owes what it
// knows) is closed saying the signal may or may not have been sent; a
// closed one whose card was not confirmed to show it is shown again. A
// pending request whose target left the fleet is closed: nothing can be
// signalled there.
func (w *Workflow) SweepOnce(ctx context.Context) {
	w.settle(ctx)
	due, now, err := w.store.Due(ctx)
	if err != nil {
		w.log.Error("could not read the requests due; the next sweep retries", slog.String("error", err.Error()))
	}
	for _, r := range due {
		switch {
		case r.State == request.Pending && r.Auto != nil && !now.Before(r.Expires):
			w.close(ctx, r, request.Expired, fmt.Sprintf("no replica carried it out within %s of its countdown's end (none was running or none could reach the state store): nothing was signalled", autoLate))
		case r.State == request.Pending && !now.Before(r.Expires):
			w.expire(ctx, r.ID)
		case r.State == request.Pending && r.Auto != nil: // its countdown has ended
			w.auto.due(ctx, r)
		case r.State == request.Pending && w.cards.posting.has(r.ID): // its card waits in this outbox
			_ = w.cards.stillPosting(ctx, r.ID)
		case r.State == request.Pending:
			w.close(ctx, r, request.Withdrawn, "its card was never posted (or never recorded as posted) and no live pgkill process was still posting it — the one that made it stopped, or could not reach the state store — so nobody could approve it: nothing was signalled")
		case r.State == request.Approved && w.owed.has(r.ID):
			// This process knows what happened — what its signal did, or
			// that it signalled nothing for an approval whose answer was
			// lost: settle writes that, never a guess.
		case r.State == request.Approved:
			w.abandon(ctx, r, now)
		case r.State.Closed(): // its card was not confirmed to show how it ended
			w.cards.reshow(ctx, r)
		}
	}
	open, err := w.store.Open(ctx)
	if err != nil {
		w.log.Error("could not read pending requests; the next sweep retries", slog.String("error", err.Error()))
	}
	defer w.log.Debug("swept", slog.Int("due", len(due)), slog.Int("open", len(open)))
	var known []string // what other replicas know: asked once, when needed
	asked := false
	for _, r := range open {
		for _, t := range r.Targets() {
			if w.inFleet(t) {
				continue
			}
			if w.known != nil && !asked {
				asked = true
				kctx, cancel := context.WithTimeout(ctx, request.CallTimeout)
				known, err = w.known(kctx)
				cancel()
				if err != nil {
					w.log.Warn("could not ask the state store which targets the replicas know: no request is closed for leaving the fleet this round", slog.String("error", err.Error()))
					return
				}
			}
			if contains(known, t) {
				continue // another replica knows it: this one lags behind
			}
			w.close(ctx, r, request.Expired, fmt.Sprintf("%s: nothing was signalled", leftFleet(t)))
			break
		}
	}
}

// close ends a pending request that can no longer be decided, saying why
// nothing was signalled.
func (w *Workflow) close(ctx context.Context, r request.Request, to request.State, why string) {
	got, err := w.store.Apply(ctx, r.ID, request.Event{Kind: request.Close, To: to, Why: why})
	if err != nil {
		if !errors.Is(err, request.ErrDecided) {
			w.log.Error("could not close a request; the next sweep retries", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		}
		return
	}
	event := AuditExpire
	if to == request.Withdrawn {
		event = AuditWithdraw
	}
	w.audit(event, "", got)
	w.metrics.Decision(string(to))
	w.cards.refresh(got)
}

// abandon closes an approval whose signaller stopped (or stalled) between
// the approval and the record of its outcome: whether the signal was sent
// is unknown, and the card says exactly that. A signaller that comes back
// records what it did over it.
func (w *Workflow) abandon(ctx context.Context, r request.Request, now time.Time) {
	got, err := w.store.Apply(ctx, r.ID, request.Event{Kind: request.Abandon,
		Why: fmt.Sprintf("pgkill stopped while it was signalling this request (approved %s before): the signal may or may not have been sent. List again to see whether the query still runs.", blocks.Duration(now.Sub(r.Decided).Round(time.Second)))})
	if err != nil {
		return
	}
	w.log.Warn("finished an abandoned approval", slog.String("request_id", r.ID))
	w.audit(AuditOutcome, "", got)
	w.metrics.Signal(string(got.Action), got.Word())
	w.cards.refresh(got)
}
