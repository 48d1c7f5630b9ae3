package approval

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/pgkill/pgkill/bot/request"
)

// owed keeps the outcomes this process knows and the state store does not
// have yet (its writes failed): what a signal did, or that none was sent.
// The sweep of this process writes them until the store takes them, and
// never closes one of these requests on a guess meanwhile. Another
// replica's sweep may (it does not know); the outcome written here then
// replaces its guess. They are lost if this process stops first.
type owed struct {
	mu sync.Mutex
	m  map[string]func(*request.Request) // by request ID: what Finish records
}

func (o *owed) add(id string, record func(*request.Request)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]func(*request.Request){}
	}
	o.m[id] = record
}

func (o *owed) has(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.m[id]
	return ok
}

func (o *owed) paid(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, id)
}

func (o *owed) all() map[string]func(*request.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]func(*request.Request), len(o.m))
	for id, f := range o.m {
		out[id] = f
	}
	return out
}

// settle writes the outcomes this process owes the store, and shows each
// one written on its card (over a guess another replica's sweep put there).
func (w *Workflow) settle(ctx context.Context) {
	for id, record := range w.owed.all() {
		before, err := w.store.Get(ctx, id)
		if err == nil {
			var got request.Request
			got, err = w.store.Apply(ctx, id, request.Event{Kind: request.Finish, Record: record})
			if err == nil {
				w.owed.paid(id)
				w.log.Warn("recorded an outcome the state store could not take before", slog.String("request_id", id), slog.Bool("replaced_a_guess", before.Abandoned))
				if before.Abandoned { // the audit trail's last word on it was that guess
					w.audit(AuditOutcome, "", got)
				}
				w.refresh(got)
				continue
			}
		}
		switch {
		case errors.Is(err, request.ErrDecided), errors.Is(err, request.ErrUnknown):
			w.owed.paid(id) // recorded after all, or never approved: nothing to set right
		default:
			w.log.Error("could not record an outcome this process knows; the next sweep retries", slog.String("request_id", id), slog.String("error", err.Error()))
		}
	}
}
