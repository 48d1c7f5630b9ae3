package approval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/request"
)

// cardDue is how long a request's card may take to be recorded, counted
// from the request or from the last word of the process posting it: that
// process pushes it back every third of it while the card waits in its
// outbox (Slack's pace, a Retry-After, a 5xx). Past it, that process
// stopped or cannot reach the state store, and the sweep closes the
// request, or a click asking for it again posts it.
const cardDue = 10 * time.Second

func cardKey(id string) string { return "card|" + id }

// cards is the workflow's side of its requests' cards in Slack: posting
// and recording them, keeping a card's deadline while it waits in the
// outbox, editing them, and showing a closed request again when the edit
// that showed it was lost.
type cards struct {
	w       *Workflow
	posting posting // cards waiting in this process's outbox

	mu    sync.Mutex
	faces map[string]face // what this process last put on each request's card
}

// face is what a card shows of its request, as far as a later edit could
// have to put right.
type face struct {
	state request.State
	votes int
}

func faceOf(r request.Request) face { return face{r.State, len(r.Votes)} }

// putting remembers what this process puts on r's card. The memory is
// dropped whole past a bound: forgetting costs at most one needless edit.
func (c *cards) putting(r request.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.faces == nil || len(c.faces) > 10000 {
		c.faces = map[string]face{}
	}
	c.faces[r.ID] = faceOf(r)
}

// willShow remembers that this process is about to put r, in state, on
// its card.
func (c *cards) willShow(r request.Request, state request.State) {
	r.State = state
	c.putting(r)
}

func (c *cards) last(id string) (face, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.faces[id]
	return f, ok
}

// render renders r's card, mentioning its targets' approvers.
func (c *cards) render(r request.Request) blocks.Message {
	return blocks.RequestMessage(r, c.approvers(r))
}

// approvers lists who to mention on r's card. A request over several
// targets needs an approver of every one of them: those named for all its
// targets, or — when no one is (a group may still hold someone who is) —
// everyone named for any, so that nobody who might is left out.
func (c *cards) approvers(r request.Request) []string {
	p := c.w.policy.Policy()
	var all, any []string
	first := true
	for _, t := range r.Targets() {
		a := p.For(t).Approvers
		if len(a) == 0 {
			continue // anyone may approve there: it narrows nothing
		}
		if first {
			all, first = slices.Clone(a), false
		}
		all = slices.DeleteFunc(all, func(id string) bool { return !slices.Contains(a, id) })
		for _, id := range a {
			if !slices.Contains(any, id) {
				any = append(any, id)
			}
		}
	}
	if len(all) > 0 {
		return all
	}
	return any
}

// publish posts a new request's card and, once Slack has it, records it
// (and, for a bulk request, lists the whole set in its thread). While the
// card waits in the outbox its deadline is kept ahead (keepDue), so that no
// sweep closes a request whose card is on its way. A card that cannot be
// posted withdraws the request — nobody could approve it — and says so to
// url's user.
func (c *cards) publish(ctx context.Context, r request.Request, url string) {
	sent := make(chan struct{})
	c.posting.add(r.ID)
	c.putting(r)
	c.w.out.Put(outbox.Item{Key: cardKey(r.ID), Channel: r.Channel, Thread: r.ThreadTS, Version: uint64(r.Version), Msg: c.render(r),
		Sent: func(ts string, err error) {
			c.posting.done(r.ID)
			close(sent)
			c.w.goWork(func(ctx context.Context) { c.posted(ctx, r, url, ts, err) })
		}})
	if r.Auto == nil { // a rule's card must be up before its countdown ends
		go c.keepDue(r.ID, sent)
	}
}

// keepDue moves request id's card deadline cardDue ahead, every third of
// it, until sent is closed or the request no longer waits for its card. It
// is not counted in Wait: it holds up nothing a shutdown waits for.
func (c *cards) keepDue(id string, sent <-chan struct{}) {
	t := time.NewTicker(cardDue / 3)
	defer t.Stop()
	for {
		select {
		case <-sent:
			return
		case <-c.w.work.Done():
			return
		case <-t.C:
		}
		if err := c.stillPosting(c.w.work, id); request.Refused(err) {
			return
		}
	}
}

// stillPosting tells the store that request id's card still waits in this
// process's outbox.
func (c *cards) stillPosting(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, cardDue/3)
	defer cancel()
	_, err := c.w.store.Apply(ctx, id, request.Event{Kind: request.Waiting, Due: cardDue})
	if err != nil && !request.Refused(err) {
		c.w.log.Warn("could not keep the card deadline of a request whose card waits to be posted", slog.String("request_id", id), slog.String("error", err.Error()))
	}
	return err
}

func (c *cards) posted(ctx context.Context, r request.Request, url, ts string, err error) {
	if err != nil {
		got, werr := c.w.store.Apply(ctx, r.ID, request.Event{Kind: request.Close, To: request.Withdrawn,
			Why: "its card could not be posted (" + err.Error() + ")"})
		if werr == nil {
			c.w.audit(AuditWithdraw, "", got)
		}
		c.w.Tell(url, ":x: pgkill could not post the approval request, so it is withdrawn: "+blocks.Escape(err.Error()))
		return
	}
	got, err := c.w.persist(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: ts})
	if err != nil && !errors.Is(err, request.ErrDecided) {
		c.w.log.Error("could not record the card of a request", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		return
	}
	c.w.log.Info("card recorded", slog.String("request_id", r.ID), slog.String("ts", ts))
	if r.Bulk() {
		under := r.ThreadTS
		if under == "" {
			under = ts
		}
		for i, m := range blocks.MemberList(r.ID, r.Members) {
			c.w.out.Put(outbox.Item{Key: fmt.Sprintf("members|%s|%d", r.ID, i), Channel: r.Channel, Thread: under, Msg: m})
		}
	}
	// A step may have come while the card was being posted (a sweep, an
	// approval of several): show it now.
	if got.State != request.Pending || len(got.Votes) > 0 {
		c.refresh(got)
	}
}

// posting counts, by request ID, the cards waiting in this process's
// outbox.
type posting struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *posting) add(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == nil {
		p.n = map[string]int{}
	}
	p.n[id]++
}

func (p *posting) done(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[id]--; p.n[id] <= 0 {
		delete(p.n, id)
	}
}

func (p *posting) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[id] > 0
}

// refresh shows r on its card. The outbox keeps the highest version put,
// so an update that was slow to come never puts an older state back. A
// request whose card was never recorded (its process stopped between
// posting and recording it) gets a new card in its thread, recorded in
// turn: its outcome is never invisible. The edit that shows a closed
// request is confirmed in the store once Slack has it; until then the
// request stays due, and a sweep (of any process) shows it again.
func (c *cards) refresh(r request.Request) {
	it := outbox.Item{Key: cardKey(r.ID), Channel: r.Channel, TS: r.CardTS, Version: uint64(r.Version), Msg: c.render(r)}
	c.putting(r)
	if r.CardTS == "" {
		it.Thread = r.ThreadTS
	}
	watched := r.State.Closed() && !r.Deadline.IsZero() // its showing is awaited (request.ShowDue)
	it.Sent = func(ts string, err error) {
		if err != nil {
			return // a closed request is shown again by the sweep when due
		}
		c.w.goWork(func(ctx context.Context) {
			v := r.Version
			if r.CardTS == "" {
				got, err := c.w.persist(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: ts, Again: true})
				if err != nil {
					return
				}
				v = got.Version
			}
			if watched {
				c.shown(ctx, r.ID, v)
			} else {
				c.overtaken(ctx, r)
			}
		})
	}
	c.w.out.Put(it)
}

// overtaken shows request r again when the card edit that just landed for
// it was overtaken: another process moved it on (a vote, a decision, its
// outcome) and may have shown that before this edit landed over it —
// Slack keeps the last edit to land, not the newest.
func (c *cards) overtaken(ctx context.Context, r request.Request) {
	got, err := c.w.store.Get(ctx, r.ID)
	if err != nil || got.Version <= r.Version || faceOf(got) == faceOf(r) {
		return // as shown (a closed request left unshown is the sweep's)
	}
	if f, ok := c.last(r.ID); ok && f == faceOf(got) {
		return // this process put that on the card after this edit: it lands after it
	}
	c.refresh(got)
}

// shown records that request id's card shows it as of version v: no sweep
// needs to show it again.
func (c *cards) shown(ctx context.Context, id string, v int64) {
	if _, err := c.w.store.Apply(ctx, id, request.Event{Kind: request.Shown, Version: v}); err != nil && !request.Refused(err) {
		c.w.log.Warn("could not record that a card shows how its request ended; a sweep shows it again", slog.String("request_id", id), slog.String("error", err.Error()))
	}
}

// reshow shows closed request r on its card again: the edit that should
// have shown it was not confirmed in time (the process that queued it
// stopped, or Slack would not take it). One process wins each round.
func (c *cards) reshow(ctx context.Context, r request.Request) {
	got, err := c.w.store.Apply(ctx, r.ID, request.Event{Kind: request.Reshow})
	switch {
	case err != nil:
		if !request.Refused(err) {
			c.w.log.Warn("could not show a closed request on its card again; the next sweep retries", slog.String("request_id", r.ID), slog.String("error", err.Error()))
		}
		return
	case got.Deadline.IsZero():
		c.w.log.Warn("gave up showing how a request ended on its card: no edit was confirmed within an hour of its decision", slog.String("request_id", r.ID), slog.String("state", string(got.State)))
		return
	}
	c.w.log.Info("showing how a request ended on its card again: the last edit was not confirmed", slog.String("request_id", r.ID), slog.String("state", string(got.State)))
	c.refresh(got)
}
