package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// lostWrite fails the first write that moves a request to state — after
// committing it when commit is set (the connection dropped after COMMIT),
// before it otherwise — and every read of a request while down is set:
// the connection that would read it back is gone too. With once, the first
// failed read brings the store back.
type lostWrite struct {
	request.Records
	state  request.State
	commit bool
	once   bool
	down   atomic.Bool
	lost   sync.Once
}

func (s *lostWrite) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	lose := false
	if r.State == string(s.state) {
		s.lost.Do(func() { lose = true })
	}
	if !lose {
		return s.Records.UpdateRecord(ctx, r)
	}
	if s.commit {
		if _, err := s.Records.UpdateRecord(ctx, r); err != nil {
			return false, err
		}
	}
	s.down.Store(true)
	return false, fmt.Errorf("state store: request %d → %s: unexpected EOF", r.ID, s.state)
}

func (s *lostWrite) Record(ctx context.Context, id int64) (pg.Record, time.Time, error) {
	if s.down.Load() {
		if s.once {
			s.down.Store(false)
		}
		return pg.Record{}, time.Time{}, fmt.Errorf("state store: request %d: connection refused", id)
	}
	return s.Records.Record(ctx, id)
}

// recordStores are the records under both request stores, for a test that
// wraps them to inject a fault.
var recordStores = []struct {
	name string
	recs func(t *testing.T) request.Records
}{
	{"memory", func(*testing.T) request.Records { return request.MemoryRecords() }},
	{"postgres", func(t *testing.T) request.Records { return pgStore(t) }},
}

// endsNothingSignalled checks that request id is done, saying that nothing
// was signalled (not the sweep's guess), and that nothing was.
func endsNothingSignalled(t *testing.T, s *request.Store, db *fakeFleet, id string) {
	t.Helper()
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != request.Done || got.Abandoned || got.Err != "" || !strings.Contains(got.NotSent, "signalled nothing") || db.signalled() != 0 {
		t.Errorf("after the store answered: %s abandoned=%t err=%q notsent=%q signals=%d; want done, nothing signalled",
			got.State, got.Abandoned, got.Err, got.NotSent, db.signalled())
	}
}

// An approval whose write's answer was lost and could not be read back
// signals nothing, and the approver is told so — not "try again", which a
// request already approved in the store would refuse. Once the store
// answers, an approval that landed ends done, "nothing signalled", on the
// store and on its card (no Approve button left) — at this process's next
// sweep, which never closes it on the guess that the signal "may or may
// not have been sent", or at the next click on its card, which is told
// that, not "already approved". One that did not land leaves the request
// pending: pressing again approves and signals it, and what was owed for
// the lost click is never written over that approval.
func TestLostApprovalAnswerSignalsNothing(t *testing.T) {
	for _, c := range []struct {
		name   string
		commit bool // the lost write landed
		then   string
	}{
		{"landed/sweep", true, "sweep"},
		{"landed/click", true, "click"},
		{"not landed", false, "press again"},
	} {
		for _, st := range recordStores {
			t.Run(c.name+"/"+st.name, func(t *testing.T) {
				recs := st.recs(t)
				lost := &lostWrite{Records: recs, state: request.Approved, commit: c.commit}
				db := newFakeFleet()
				release := make(chan struct{})
				db.verify = func(pg.Outcome) (pg.Verification, error) {
					<-release
					return pg.Verification{Ended: true, How: "query ended"}, nil
				}
				opts := flowOpts{budget: time.Minute, margin: time.Minute}
				if c.then == "sweep" { // its deadline is waited for
					opts = flowOpts{budget: 100 * time.Millisecond, margin: 100 * time.Millisecond}
				}
				w, out := newFlow(t, db, request.NewStore(lost), opts)
				s := request.NewStore(recs) // the store as it is
				r := made(t, s, 57, time.Hour)

				w.Approve(ctx, on("UAPP", r), r.ID)
				if n := db.signalled(); n != 0 {
					t.Fatalf("signalled %d time(s) after an approval whose write may not have been recorded", n)
				}
				if said := told(out, "UAPP"); !strings.Contains(said, "could not tell whether it recorded your approval") || !strings.Contains(said, "Nothing was signalled") || strings.Contains(said, "try again") {
					t.Errorf("the approver was told %q", said)
				}
				lost.down.Store(false) // the store answers again

				switch c.then {
				case "sweep":
					waitDue(t, s, r.ID) // past the approval's deadline: an unrecorded signal is due
					w.SweepOnce(ctx)
				case "click":
					w.Approve(ctx, on("UAPP", r), r.ID)
					if said := told(out, "UAPP"); strings.Contains(said, "already approved") || !strings.Contains(said, "already done") {
						t.Errorf("a click after the store answered was told %q", said)
					}
				case "press again":
					w.SweepOnce(ctx)
					if got, _ := s.Get(ctx, r.ID); got.State != request.Pending {
						t.Fatalf("an approval that never landed left the request %s", got.State)
					}
					done := make(chan struct{})
					go func() { defer close(done); w.Approve(ctx, on("UAPP", r), r.ID) }()
					<-db.sent
					w.SweepOnce(ctx) // while the second approval signals: nothing owed is written over it
					close(release)
					<-done
					w.SweepOnce(ctx)
					if got, _ := s.Get(ctx, r.ID); got.State != request.Done || got.NotSent != "" || got.Outcome.Result != pg.Sent || db.signalled() != 1 {
						t.Errorf("pressed again: %s notsent=%q outcome=%q signals=%d; want done, sent once", got.State, got.NotSent, got.Outcome.Result, db.signalled())
					}
					return
				}
				endsNothingSignalled(t, s, db, r.ID)
				m, _ := shown(out.put(), cardKey(r.ID))
				js, _ := json.Marshal(m)
				if strings.Contains(string(js), "may or may not") || strings.Contains(string(js), blocks.ActionApprove) || !strings.Contains(string(js), "Nothing signalled") {
					t.Errorf("the card ends as %s", js)
				}
			})
		}
	}
}

// A rule's approval whose write's answer was lost and could not be read
// back signals nothing either: once the store answers, the request ends
// done, "nothing signalled", never closed on the sweep's guess.
func TestLostRuleApprovalAnswerSignalsNothing(t *testing.T) {
	for _, st := range recordStores {
		t.Run(st.name, func(t *testing.T) {
			recs := st.recs(t)
			lost := &lostWrite{Records: recs, state: request.Approved, commit: true}
			db := newFakeFleet()
			w, _ := newFlow(t, db, request.NewStore(lost), flowOpts{budget: 100 * time.Millisecond, margin: 100 * time.Millisecond})
			s := request.NewStore(recs)
			r := fired(t, w, s, firing(rule("lost", autopilot.Act, 50*time.Millisecond), 506))
			waitDue(t, s, r.ID)
			w.SweepOnce(ctx) // the rule approves: the answer is lost, and so is the read back
			if n := db.signalled(); n != 0 {
				t.Fatalf("signalled %d time(s) after a rule's approval whose write may not have been recorded", n)
			}
			lost.down.Store(false)
			waitDue(t, s, r.ID) // past the approval's deadline: an unrecorded signal is due
			w.SweepOnce(ctx)
			endsNothingSignalled(t, s, db, r.ID)
		})
	}
}
