package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/request"
)

// cardDue is how long after a request its card must be recorded: past it,
// the process that made it stopped (or lost the store's reply), and the
// sweep closes it, or a click asking for it again posts it.
const cardDue = 10 * time.Second

func cardKey(id string) string { return "card|" + id }

// card renders r's card, mentioning its targets' approvers.
func (w *Workflow) card(r request.Request) blocks.Message {
	return blocks.RequestMessage(r, w.policy.Policy().For(r.Backend.Target).Approvers)
}

// publish posts a new request's card and, once Slack has it, records it
// (and, for a bulk request, lists the whole set in its thread). A card that
// cannot be posted withdraws the request — nobody could approve it — and
// says so to url's user.
func (w *Workflow) publish(ctx context.Context, r request.Request, url string) {
	w.out.Put(outbox.Item{Key: cardKey(r.ID), Channel: r.Channel, Thread: r.ThreadTS, Version: uint64(r.Version), Msg: w.card(r),
		Sent: func(ts string, err error) {
			w.goWork(func(ctx context.Context) { w.posted(ctx, r, url, ts, err) })
		}})
}

func (w *Workflow) posted(ctx context.Context, r request.Request, url, ts string, err error) {
	if err != nil {
		got, werr := w.store.Apply(ctx, r.ID, request.Event{Kind: request.Close, To: request.Withdrawn,
			Why: "its card could not be posted (" + err.Error() + ")"})
		if werr == nil {
			w.audit(AuditWithdraw, "", got)
		}
		w.Tell(url, ":x: pgkill could not post the approval request, so it is withdrawn: "+blocks.Escape(err.Error()))
		return
	}
	got, err := w.store.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: ts})
	if err != nil && !errors.Is(err, request.ErrDecided) {
		w.log.Error("could not record the card of a request", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		return
	}
	w.log.Info("card recorded", slog.String("request_id", r.ID), slog.String("ts", ts))
	if r.Bulk() {
		under := r.ThreadTS
		if under == "" {
			under = ts
		}
		for i, m := range blocks.MemberList(r.ID, r.Members) {
			w.out.Put(outbox.Item{Key: fmt.Sprintf("members|%s|%d", r.ID, i), Channel: r.Channel, Thread: under, Msg: m})
		}
	}
	// A step may have come while the card was being posted (a sweep, an
	// approval of several): show it now.
	if got.State != request.Pending || len(got.Votes) > 0 {
		w.refresh(got)
	}
}

// refresh shows r on its card. The outbox keeps the highest version put,
// so an update that was slow to come never puts an older state back. A
// request whose card was never recorded (its process stopped between
// posting and recording it) gets a new card in its thread, recorded in
// turn: its outcome is never invisible.
func (w *Workflow) refresh(r request.Request) {
	it := outbox.Item{Key: cardKey(r.ID), Channel: r.Channel, TS: r.CardTS, Version: uint64(r.Version), Msg: w.card(r)}
	if r.CardTS == "" {
		it.Thread = r.ThreadTS
		it.Sent = func(ts string, err error) {
			if err == nil {
				w.goWork(func(ctx context.Context) {
					_, _ = w.store.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: ts})
				})
			}
		}
	}
	w.out.Put(it)
}
