package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/request"
)

// owed keeps the outcomes this process knows and the state store does not
// have yet: what a signal did when its record failed, or that nothing was
// signalled for an approval whose write may or may not have been recorded.
// The sweep of this process writes them until the store takes them, and
// never closes one of these requests on a guess meanwhile. Another
// replica's sweep may (it does not know); the outcome written here then
// replaces its guess. They are lost if this process stops first.
type owed struct {
	mu sync.Mutex
	m  map[string]debt
}

// debt is one outcome owed to the store.
type debt struct {
	record func(*request.Request) // what Finish records
	// mine, for an approval that may not have been recorded, says whether
	// the request's approval is that one (nil: it surely is). Until it
	// is, nothing is written over anybody else's.
	mine func(request.Request) bool
}

func (o *owed) add(id string, d debt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]debt{}
	}
	o.m[id] = d
}

func (o *owed) has(id string) bool {
	_, ok := o.get(id)
	return ok
}

func (o *owed) get(id string) (debt, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.m[id]
	return d, ok
}

func (o *owed) paid(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, id)
}

func (o *owed) all() map[string]debt {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]debt, len(o.m))
	for id, d := range o.m {
		out[id] = d
	}
	return out
}

// settle writes the outcomes this process owes the store, and shows each
// one written on its card (over a guess another replica's sweep put there).
func (w *Workflow) settle(ctx context.Context) {
	for id, d := range w.owed.all() {
		w.pay(ctx, id, d)
	}
}

// settled writes what this process owes for r, if anything, before a click
// on its card is answered: the answer is then what the store has, not a
// state this process knows to be out of date. It returns r as it is.
func (w *Workflow) settled(ctx context.Context, r request.Request) request.Request {
	d, ok := w.owed.get(r.ID)
	if !ok {
		return r
	}
	if got, ok := w.pay(ctx, r.ID, d); ok {
		return got
	}
	return r
}

// pay writes the outcome owed for request id, shows it on its card, and
// returns the request as written (false: not written now). An approval
// that may not have been recorded is waited for while its request is
// pending (its write may yet land), and forgotten once the request went
// another way.
func (w *Workflow) pay(ctx context.Context, id string, d debt) (request.Request, bool) {
	before, err := w.store.Get(ctx, id)
	switch {
	case err == nil && d.mine != nil && before.State == request.Pending:
		return before, false
	case err == nil && d.mine != nil && !d.mine(before):
		w.owed.paid(id) // that approval never landed: nothing to set right
		return before, false
	}
	if err == nil {
		var got request.Request
		got, err = w.store.Apply(ctx, id, request.Event{Kind: request.Finish, Record: d.record})
		if err == nil {
			w.owed.paid(id)
			w.log.Warn("recorded an outcome the state store could not take before", slog.String("request_id", id), slog.Bool("replaced_a_guess", before.Abandoned))
			if before.Abandoned || d.mine != nil { // the audit trail's last word on it was a guess, or nothing
				w.audit(AuditOutcome, "", got)
			}
			w.cards.refresh(got)
			return got, true
		}
	}
	switch {
	case errors.Is(err, request.ErrDecided), errors.Is(err, request.ErrUnknown):
		w.owed.paid(id) // recorded after all: nothing to set right
	default:
		w.log.Error("could not record an outcome this process knows; the next sweep retries", slog.String("request_id", id), slog.String("error", err.Error()))
	}
	return before, false
}

// unsure answers a click whose step may or may not have been recorded
// (request.ErrUnsure); an approval's is owed the store as "nothing was
// signalled", once and if it shows there as this approval.
func (w *Workflow) unsure(url, what string, r request.Request, approval bool, err error) {
	w.log.Error("the state store's answer was lost", slog.String("doing", what), slog.String("request_id", r.ID), slog.String("error", err.Error()))
	if approval {
		decider, decided := r.Decider, r.Decided
		w.owed.add(r.ID, debt{
			record: func(x *request.Request) {
				x.NotSent = "pgkill lost the state store's answer to this approval and could not read it back, so it signalled nothing (a signal then could follow a request another replica had closed). Request it again if it is still needed"
			},
			mine: func(x request.Request) bool {
				return (x.State == request.Approved || x.State == request.Done) && x.Decider == decider && x.Decided.Equal(decided)
			},
		})
	}
	then := "Nothing was signalled, and nothing will be for this click. The card shows what the store has once it answers: if it still asks for a decision, press again."
	switch {
	case !approval && r.Auto != nil: // a Stop: the rule acts unless it landed
		then = "If it was not, the rule still acts when its countdown ends. The card shows what the store has once it answers: if it still counts down, press Stop again."
	case !approval:
		then = "If it was not, the request still stands. The card shows what the store has once it answers: if it still asks for a decision, press again."
	}
	w.Tell(url, fmt.Sprintf(":warning: pgkill could not tell whether it recorded %s for request %s (state store: %s). %s",
		what, r.ID, blocks.Escape(err.Error()), then))
}
