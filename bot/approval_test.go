package bot

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// stores runs a test against both request stores: in memory, and in
// PostgreSQL through pg.Store.
func stores(t *testing.T, test func(t *testing.T, s requests)) {
	t.Run("memory", func(t *testing.T) { test(t, newMemRequests()) })
	t.Run("postgres", func(t *testing.T) {
		st, err := pg.OpenStore(context.Background(), pgtest.Database(t, "state_unit"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		test(t, &storedRequests{store: st, now: time.Now})
	})
}

// identity makes a backend identity unique to this test run, since the
// stored requests of all tests share one table.
func identity(pid int32) pg.Identity {
	return pg.Identity{Target: "t", PID: pid, BackendStart: time.Now(), QueryStart: time.Now().Round(time.Microsecond)}
}

func TestRequestsTransitionOnce(t *testing.T) {
	stores(t, func(t *testing.T, s requests) {
		ctx := context.Background()
		id := identity(1)
		a, ok, err := s.add(ctx, Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: id, Duration: time.Minute}, Requested: time.Now()})
		if err != nil || !ok || a.State != Pending || a.ID == "" {
			t.Fatalf("add = %+v, %v, %v", a, ok, err)
		}
		if dup, ok, _ := s.add(ctx, Approval{Action: pg.Cancel, Backend: a.Backend}); ok || dup.ID != a.ID {
			t.Errorf("duplicate pending request created: %+v", dup)
		}
		if _, ok, _ := s.add(ctx, Approval{Action: pg.Terminate, Backend: a.Backend}); !ok {
			t.Errorf("a terminate request next to a pending cancel was refused")
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				to := Approved
				if i%2 == 1 {
					to = Denied
				}
				if _, ok, err := s.transition(ctx, a.ID, Pending, to, func(x *Approval) error { x.Decider = "U1"; return nil }); ok && err == nil {
					wins.Add(1)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%d decisions won, want exactly 1", wins.Load())
		}
		got, ok, err := s.get(ctx, a.ID)
		if err != nil || !ok || got.Decider != "U1" || got.Backend.Duration != time.Minute || (got.State != Approved && got.State != Denied) {
			t.Errorf("get = %+v, %v, %v", got, ok, err)
		}
		if _, ok, _ := s.transition(ctx, a.ID, Pending, Expired, nil); ok {
			t.Error("a decided request expired")
		}
		if _, ok, _ := s.get(ctx, "R999999999"); ok {
			t.Error("unknown request found")
		}
		if err := s.update(ctx, a.ID, func(x *Approval) { x.CardTS = "1.2" }); err != nil {
			t.Fatal(err)
		}
		if got, _, _ := s.get(ctx, a.ID); got.CardTS != "1.2" || got.State != Approved && got.State != Denied {
			t.Errorf("after update: %+v", got)
		}
	})
}

func TestRequestsEndedBy(t *testing.T) {
	stores(t, func(t *testing.T, s requests) {
		ctx := context.Background()
		id := identity(2)
		a, _, _ := s.add(ctx, Approval{Action: pg.Terminate, Backend: pg.Backend{Identity: id}, Requester: "U1"})
		if _, ok := s.endedBy(ctx, id); ok {
			t.Error("a pending request ended the query")
		}
		s.transition(ctx, a.ID, Pending, Approved, func(x *Approval) error { x.Decider = "U2"; return nil })
		s.transition(ctx, a.ID, Approved, Done, func(x *Approval) error { x.Outcome = pg.Outcome{Action: pg.Terminate, Result: pg.Sent}; return nil })
		got, ok := s.endedBy(ctx, id)
		if !ok || got.ID != a.ID || got.Decider != "U2" {
			t.Errorf("endedBy = %+v, %v", got, ok)
		}
		other := id
		other.QueryStart = other.QueryStart.Add(time.Second)
		if _, ok := s.endedBy(ctx, other); ok {
			t.Error("another execution matched")
		}
		pending, err := s.inState(ctx, Pending)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pending {
			if p.ID == a.ID {
				t.Error("a done request is listed as pending")
			}
		}
	})
}

func TestMemRequestsForgetOldDecisions(t *testing.T) {
	ctx := context.Background()
	s := newMemRequests()
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	old, _, _ := s.add(ctx, Approval{Action: pg.Cancel, Requested: day, Backend: pg.Backend{Identity: pg.Identity{PID: 1}}})
	s.transition(ctx, old.ID, Pending, Denied, func(a *Approval) error { a.Decided = day; return nil })
	pending, _, _ := s.add(ctx, Approval{Action: pg.Cancel, Requested: day, Backend: pg.Backend{Identity: pg.Identity{PID: 2}}})
	s.add(ctx, Approval{Action: pg.Cancel, Requested: day.Add(25 * time.Hour), Backend: pg.Backend{Identity: pg.Identity{PID: 3}}})
	if _, ok, _ := s.get(ctx, old.ID); ok {
		t.Error("a request decided over a day ago is still kept")
	}
	if _, ok, _ := s.get(ctx, pending.ID); !ok {
		t.Error("a pending request was forgotten")
	}
}

// A transition and an update of other fields at the same moment both stick:
// once, a transition rewrote the whole request it had read earlier, and the
// card's ts recorded meanwhile was lost (a card left "pending" with live
// buttons after its query was cancelled).
func TestRequestsConcurrentChangesAreNotLost(t *testing.T) {
	stores(t, func(t *testing.T, s requests) {
		ctx := context.Background()
		var ids []string
		for i := range 40 {
			a, _, err := s.add(ctx, Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(int32(100 + i))}, Requested: time.Now(), Expires: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, a.ID)
		}
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := s.update(ctx, id, func(x *Approval) { x.CardTS = "ts-" + id }); err != nil {
					t.Error(err)
				}
			}()
			go func() {
				defer wg.Done()
				if _, ok, err := s.transition(ctx, id, Pending, Approved, func(x *Approval) error { x.Decider = "U1"; return nil }); err != nil || !ok {
					t.Errorf("transition %s: %v %v", id, ok, err)
				}
			}()
		}
		wg.Wait()
		for _, id := range ids {
			got, _, err := s.get(ctx, id)
			if err != nil || got.State != Approved || got.Decider != "U1" || got.CardTS != "ts-"+id {
				t.Errorf("%s after concurrent changes: state=%s decider=%q card=%q err=%v", id, got.State, got.Decider, got.CardTS, err)
			}
		}
	})
}

// An alert resolved by a bulk request names that request: its members are
// found whichever store keeps them.
func TestRequestsEndedByBulk(t *testing.T) {
	stores(t, func(t *testing.T, s requests) {
		ctx := context.Background()
		m1, m2 := identity(41), identity(42)
		a, _, err := s.add(ctx, Approval{Action: pg.Cancel, Members: []pg.Backend{{Identity: m1}, {Identity: m2}}, Requester: "U1",
			Backend: pg.Backend{Identity: pg.Identity{Target: "t"}}})
		if err != nil {
			t.Fatal(err)
		}
		s.transition(ctx, a.ID, Pending, Approved, func(x *Approval) error { x.Decider = "U2"; return nil })
		s.transition(ctx, a.ID, Approved, Done, func(x *Approval) error {
			x.Results = []blocks.MemberOutcome{{Outcome: pg.Outcome{Result: pg.Gone}}, {Outcome: pg.Outcome{Result: pg.Sent}}}
			return nil
		})
		if got, ok := s.endedBy(ctx, m2); !ok || got.ID != a.ID {
			t.Errorf("endedBy(signalled member) = %+v, %v", got.ID, ok)
		}
		if _, ok := s.endedBy(ctx, m1); ok {
			t.Error("a member that was skipped (nothing sent) is said to be ended by the request")
		}
	})
}
