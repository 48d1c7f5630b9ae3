package approval

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// oneSlack is the Slack two processes share: an edit shows what it says
// when it lands, and the last one to land is what people see.
type oneSlack struct {
	mu   sync.Mutex
	card map[string]blocks.Message
}

func (s *oneSlack) land(it outbox.Item) {
	s.mu.Lock()
	s.card[it.TS] = it.Msg
	s.mu.Unlock()
	if it.Sent != nil {
		it.Sent(it.TS, nil)
	}
}

func (s *oneSlack) shows(ts string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.card[ts].Text
}

// procOut is one process's outbox over oneSlack: its edits land at once,
// or, while held (Slack slow to this process: retries, a Retry-After),
// when released.
type procOut struct {
	slack *oneSlack
	mu    sync.Mutex
	hold  bool
	held  []outbox.Item
}

func (o *procOut) Put(it outbox.Item) {
	if it.TS == "" || it.URL != "" {
		return // only card edits matter here
	}
	o.mu.Lock()
	if o.hold {
		o.held = append(o.held, it)
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	o.slack.land(it)
}

func (o *procOut) release() {
	o.mu.Lock()
	held := o.held
	o.hold, o.held = false, nil
	o.mu.Unlock()
	for _, it := range held {
		o.slack.land(it)
	}
}

// A closed request's card is confirmed shown when this process's edit
// lands; an earlier edit queued by another replica (slow to reach Slack)
// may land after it and put a pending card back — "1 of 2 approvals" with
// Approve and Deny over a query already cancelled. The card must come to
// show how the request ended: no sweep may take the first landing as the
// last word.
func TestLateEarlierEditDoesNotOutliveShownCard(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		s.ShowWithin(100 * time.Millisecond)
		sl := &oneSlack{card: map[string]blocks.Message{}}
		approvers := policy.NewChecker(&policy.Policy{Default: policy.Rules{Approvers: []string{"U1", "U2"}}}, nil)
		a, _ := newFlow(t, newFakeFleet(), s)
		aout := &procOut{slack: sl}
		a.out, a.policy = aout, approvers
		b, _ := newFlow(t, newFakeFleet(), s)
		bout := &procOut{slack: sl, hold: true}
		b.out, b.policy = bout, approvers

		r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(91)}, Requester: "UREQ", Channel: "C", Needed: 2}, time.Hour, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = s.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: "1.1"}); err != nil {
			t.Fatal(err)
		}
		b.Approve(ctx, on("U1", r), r.ID) // replica B: "1 of 2", slow to reach Slack
		b.Wait(5 * time.Second)
		a.Approve(ctx, on("U2", r), r.ID) // replica A: the second approval, carried out
		a.Wait(5 * time.Second)
		if got, _ := s.Get(ctx, r.ID); got.State != request.Done {
			t.Fatalf("the request is %s, want done", got.State)
		}
		bout.release() // B's edit reaches Slack at last
		b.Wait(5 * time.Second)

		time.Sleep(150 * time.Millisecond) // past ShowWithin
		for range 3 {
			a.SweepOnce(ctx)
			b.SweepOnce(ctx)
			a.Wait(5 * time.Second)
			b.Wait(5 * time.Second)
		}
		if got, _ := s.Get(ctx, r.ID); !strings.Contains(sl.shows("1.1"), "ended") {
			t.Errorf("request %s is %s, yet its card shows %q", r.ID, got.State, sl.shows("1.1"))
		}
	})
}
