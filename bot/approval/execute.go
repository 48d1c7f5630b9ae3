package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// recordBudget bounds the recording of an outcome by its signaller (the
// sweep tries again after): the signal happened, whatever time it took.
const recordBudget = 15 * time.Second

// execute carries out an approved request — signals its backend (or set)
// with the identity check, verifies, and records what PostgreSQL did — and
// never talks to Slack. It signals only within its budget, counted from
// start (just before the approval was written): past it, the sweep of any
// replica may close the request, and a signal then would be one nobody
// sees, so none is sent.
func (w *Workflow) execute(ctx context.Context, r request.Request, start time.Time) request.Request {
	deadline := start.Add(w.cfg.Budget)
	if late := time.Since(start); !time.Now().Before(deadline) {
		w.log.Error("an approval came too late to be carried out: nothing was signalled", slog.String("request_id", r.ID), slog.Duration("late", late))
		return w.finish(ctx, r, func(x *request.Request) {
			x.NotSent = fmt.Sprintf("pgkill was held up for %s after the approval, past the time in which it may signal (so that a signal never follows a request another replica has closed): nothing was signalled. Request it again if it is still needed", blocks.Duration(late))
		})
	}
	sctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	atts := w.db.SignalVerify(sctx, r.Action, identities(r), w.cfg.VerifyTimeout)
	var prevent *request.Prevention
	if !r.Bulk() && atts[0].Outcome.Result == pg.Sent {
		prevent = w.prevention(ctx, r.Backend, r.Decided.Sub(r.Requested))
	}
	return w.finish(ctx, r, func(x *request.Request) {
		if x.Bulk() {
			x.Results = atts
			return
		}
		a := atts[0]
		x.Outcome, x.Verified, x.Err, x.VerifyErr, x.NotSent = a.Outcome, a.Verified, a.Err, a.VerifyErr, a.NotSent
		x.Prevent = prevent
	})
}

// preventionBudget bounds the read of a role's setting after a signal.
const preventionBudget = 3 * time.Second

// prevention is the server setting that would have ended b without anyone
// — statement_timeout for a running statement, the idle-in-transaction
// timeout for an idle transaction — with a value under how long it went
// on (as listed, and waited since: the request's age when approved), and
// what its role has now.
func (w *Workflow) prevention(ctx context.Context, b pg.Backend, waited time.Duration) *request.Prevention {
	p := &request.Prevention{Setting: "statement_timeout", Role: b.User, DB: b.Database}
	if b.State.Idle() {
		p.Setting = "idle_in_transaction_session_timeout"
	}
	p.Value = below(b.Duration + max(waited, 0))
	if b.User == "" || b.Database == "" || p.Value == "" {
		return nil
	}
	for _, s := range w.db.Specs() {
		if s.Name == b.Target {
			p.RDS = s.Origin != "" || strings.Contains(s.DSN, ".rds.amazonaws.com")
		}
	}
	rctx, cancel := context.WithTimeout(ctx, preventionBudget)
	defer cancel()
	if v, src, err := w.db.RoleSetting(rctx, b.Target, b.User, b.Database, p.Setting); err == nil {
		p.Current, p.Source = v, src
		if v == "0" {
			p.Current = "0 (off)"
		}
	}
	return p
}

// below is a round timeout under d: what would have ended a session that
// went on for d; "" under a minute and a half, where a timeout that short
// would end sessions meant to run.
func below(d time.Duration) string {
	for _, c := range []struct {
		d time.Duration
		s string
	}{{2 * time.Hour, "2h"}, {time.Hour, "1h"}, {30 * time.Minute, "30min"}, {15 * time.Minute, "15min"},
		{10 * time.Minute, "10min"}, {5 * time.Minute, "5min"}, {2 * time.Minute, "2min"}, {90 * time.Second, "1min"}} {
		if d > c.d {
			return c.s
		}
	}
	return ""
}

func identities(r request.Request) []pg.Identity {
	if !r.Bulk() {
		return []pg.Identity{r.Backend.Identity}
	}
	ids := make([]pg.Identity, len(r.Members))
	for i, m := range r.Members {
		ids[i] = m.Identity
	}
	return ids
}

// finish records an approved request's outcome, trying again within the
// record budget. The signal happened (or surely did not): the outcome is
// reported even if the store cannot record it, and this process keeps
// writing it from its sweep (owed) — never leaving the sweep's guess, "may
// or may not have been sent", as the last word on what it knows.
func (w *Workflow) finish(ctx context.Context, r request.Request, record func(*request.Request)) request.Request {
	// This process shows the outcome next, whatever the store says: an
	// earlier edit landing meanwhile needs no putting right (overtaken).
	w.cards.willShow(r, request.Done)
	done, err := w.persist(context.WithoutCancel(ctx), r.ID, request.Event{Kind: request.Finish, Record: record})
	if err == nil {
		return done
	}
	mine := r
	record(&mine)
	switch {
	case errors.Is(err, request.ErrDecided) && done.State == request.Done && !done.Abandoned && sameOutcome(done, mine):
		return done // this write, whose answer was lost, landed after all
	case errors.Is(err, request.ErrDecided):
		w.log.Error("the outcome of a request was recorded elsewhere first", slog.String("request_id", r.ID), slog.String("state", string(done.State)))
	default:
		w.log.Error("could not record the outcome of a request; the sweep keeps trying", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		w.owed.add(r.ID, debt{record: record})
	}
	done = r
	done.State, done.Deadline = request.Done, time.Time{}
	done.Version++ // shown over the approved card, which is all Slack has
	record(&done)
	return done
}

// sameOutcome reports whether a and b record the same outcome, as stored.
func sameOutcome(a, b request.Request) bool {
	outcome := func(r request.Request) string {
		raw, _ := json.Marshal([]any{r.Outcome, r.Verified, r.Results, r.Err, r.NotSent})
		return string(raw)
	}
	return outcome(a) == outcome(b)
}
