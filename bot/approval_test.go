package bot

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
)

func TestApprovalTransitionsOnce(t *testing.T) {
	s := newApprovals()
	a, ok := s.add(Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: pg.Identity{Target: "t", PID: 1}}})
	if !ok || a.ID != "R1" || a.State != Pending {
		t.Fatalf("add = %+v, %v", a, ok)
	}
	if dup, ok := s.add(Approval{Action: pg.Cancel, Backend: a.Backend}); ok || dup.ID != "R1" {
		t.Errorf("duplicate pending request created: %+v", dup)
	}
	if _, ok := s.add(Approval{Action: pg.Terminate, Backend: a.Backend}); !ok {
		t.Errorf("a terminate request next to a pending cancel was refused")
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, ok := s.transition("R1", Pending, Approved, nil); ok {
				wins.Add(1)
			}
			s.transition("R1", Pending, Denied, nil)
		}()
	}
	wg.Wait()
	got, _ := s.get("R1")
	if wins.Load()+boolInt(got.State == Denied) != 1 {
		t.Errorf("%d approvals won and state is %s; want exactly one decision", wins.Load(), got.State)
	}
	if _, ok := s.transition("R1", Pending, Expired, nil); ok {
		t.Error("a decided request expired")
	}
	if _, ok := s.transition("nope", Pending, Approved, nil); ok {
		t.Error("unknown request transitioned")
	}
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func TestApprovalsForgetOldDecisions(t *testing.T) {
	s := newApprovals()
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	old, _ := s.add(Approval{Action: pg.Cancel, Requested: day, Backend: pg.Backend{Identity: pg.Identity{PID: 1}}})
	s.transition(old.ID, Pending, Denied, func(a *Approval) { a.Decided = day })
	pending, _ := s.add(Approval{Action: pg.Cancel, Requested: day, Backend: pg.Backend{Identity: pg.Identity{PID: 2}}})
	s.add(Approval{Action: pg.Cancel, Requested: day.Add(25 * time.Hour), Backend: pg.Backend{Identity: pg.Identity{PID: 3}}})
	if _, ok := s.get(old.ID); ok {
		t.Error("a request decided over a day ago is still kept")
	}
	if _, ok := s.get(pending.ID); !ok {
		t.Error("a pending request was forgotten")
	}
}
