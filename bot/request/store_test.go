package request_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

var (
	_ request.Records    = (*pg.Store)(nil)
	_ request.SetRecords = (*pg.Store)(nil)
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// stores runs a test against both stores: in memory, and in PostgreSQL
// through pg.Store.
func stores(t *testing.T, test func(t *testing.T, s *request.Store, recs request.Records)) {
	t.Run("memory", func(t *testing.T) {
		recs := request.MemoryRecords()
		test(t, request.NewStore(recs), recs)
	})
	t.Run("postgres", func(t *testing.T) {
		st, err := pg.OpenStore(context.Background(), pgtest.Database(t, "request_unit"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		test(t, request.NewStore(st), st)
	})
}

// identity makes a backend identity unique to this test run, since the
// stored requests of all tests share one table.
func identity(pid int32) pg.Identity {
	return pg.Identity{Target: "t", PID: pid, BackendStart: time.Now(), QueryStart: time.Now().Round(time.Microsecond)}
}

var ctx = context.Background()

func approve(user string) request.Event {
	return request.Event{Kind: request.Approve, User: user, Budget: time.Minute}
}

// Of many concurrent decisions exactly one wins, in every store; a decided
// request is not decided again; a second open request for the same thing is
// not made.
func TestDecidedOnce(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		r, created, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(1), Duration: time.Minute}, Requester: "UREQ"}, time.Hour, 0)
		if err != nil || !created || r.State != request.Pending || r.ID == "" || r.Expires.Sub(r.Requested) != time.Hour {
			t.Fatalf("add = %+v, %v, %v", r, created, err)
		}
		if dup, created, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: r.Backend}, time.Hour, 0); created || dup.ID != r.ID {
			t.Errorf("duplicate pending request created: %+v", dup)
		}
		if _, created, _ := s.Add(ctx, request.Request{Action: pg.Terminate, Backend: r.Backend}, time.Hour, 0); !created {
			t.Errorf("a terminate request next to a pending cancel was refused")
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e := approve("U1")
				if i%2 == 1 {
					e = request.Event{Kind: request.Deny, User: "U1"}
				}
				if _, err := s.Apply(ctx, r.ID, e); err == nil {
					wins.Add(1)
				} else if !errors.Is(err, request.ErrDecided) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%d decisions won, want exactly 1", wins.Load())
		}
		got, err := s.Get(ctx, r.ID)
		if err != nil || got.Decider != "U1" || got.Backend.Duration != time.Minute || (got.State != request.Approved && got.State != request.Denied) {
			t.Errorf("get = %+v, %v", got, err)
		}
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Expire}); !errors.Is(err, request.ErrDecided) {
			t.Errorf("a decided request expired: %v", err)
		}
		if _, err := s.Get(ctx, "R999999999"); !errors.Is(err, request.ErrUnknown) {
			t.Errorf("unknown request: %v", err)
		}
	})
}

// A step and a card's ts recorded at the same moment both stick: neither
// overwrites the other.
func TestConcurrentStepsAreNotLost(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		var ids []string
		for i := range 40 {
			r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(int32(100 + i))}, Requester: "UREQ"}, time.Hour, 0)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.ID)
		}
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if _, err := s.Apply(ctx, id, request.Event{Kind: request.Posted, CardTS: "ts-" + id}); err != nil {
					t.Error(err)
				}
			}()
			go func() {
				defer wg.Done()
				if _, err := s.Apply(ctx, id, approve("U1")); err != nil {
					t.Errorf("approve %s: %v", id, err)
				}
			}()
		}
		wg.Wait()
		for _, id := range ids {
			got, err := s.Get(ctx, id)
			if err != nil || got.State != request.Approved || got.Decider != "U1" || got.CardTS != "ts-"+id {
				t.Errorf("%s after concurrent steps: state=%s decider=%q card=%q err=%v", id, got.State, got.Decider, got.CardTS, err)
			}
		}
	})
}

// finish records a signal's outcome.
func finish(out pg.Outcome, results ...pg.Attempt) request.Event {
	return request.Event{Kind: request.Finish, Record: func(r *request.Request) { r.Outcome, r.Results = out, results }}
}

// An alert names the request that ended its query — single or bulk — and
// never one that skipped it or is not done.
func TestEndedBy(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		id := identity(2)
		r, _, _ := s.Add(ctx, request.Request{Action: pg.Terminate, Backend: pg.Backend{Identity: id}, Requester: "U1"}, time.Hour, 0)
		if _, ok, _ := s.EndedBy(ctx, id); ok {
			t.Error("a pending request ended the query")
		}
		s.Apply(ctx, r.ID, approve("U2"))
		s.Apply(ctx, r.ID, finish(pg.Outcome{Action: pg.Terminate, Result: pg.Sent}))
		if got, ok, _ := s.EndedBy(ctx, id); !ok || got.ID != r.ID || got.Decider != "U2" {
			t.Errorf("EndedBy = %+v, %v", got, ok)
		}
		other := id
		other.QueryStart = other.QueryStart.Add(time.Second)
		if _, ok, _ := s.EndedBy(ctx, other); ok {
			t.Error("another execution matched")
		}

		m1, m2 := identity(41), identity(42)
		b, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Members: []pg.Backend{{Identity: m1}, {Identity: m2}}, Requester: "U1",
			Backend: pg.Backend{Identity: pg.Identity{Target: "t"}}}, time.Hour, 0)
		if err != nil {
			t.Fatal(err)
		}
		s.Apply(ctx, b.ID, approve("U2"))
		s.Apply(ctx, b.ID, finish(pg.Outcome{}, pg.Attempt{Outcome: pg.Outcome{Result: pg.Gone}}, pg.Attempt{Outcome: pg.Outcome{Result: pg.Sent}}))
		if got, ok, _ := s.EndedBy(ctx, m2); !ok || got.ID != b.ID {
			t.Errorf("EndedBy(signalled member) = %+v, %v", got.ID, ok)
		}
		if _, ok, _ := s.EndedBy(ctx, m1); ok {
			t.Error("a member that was skipped (nothing sent) is said to be ended by the request")
		}
	})
}

// Time is judged on the store's clock: an approval after the expiry is
// refused, and the sweep finds a request due only once its time is past.
func TestTimeIsTheStoresClock(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(3)}, Requester: "U1"}, 50*time.Millisecond, 0)
		if err != nil {
			t.Fatal(err)
		}
		long, _, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(4)}, Requester: "U1"}, time.Hour, 0)
		waitDue(t, s, r.ID)
		if _, err := s.Apply(ctx, r.ID, approve("U2")); !errors.Is(err, request.ErrExpired) {
			t.Errorf("approved after expiry: %v", err)
		}
		if _, err := s.Apply(ctx, long.ID, request.Event{Kind: request.Expire}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("expired before its time: %v", err)
		}
		if got, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Expire}); err != nil || got.State != request.Expired {
			t.Errorf("expire = %s, %v", got.State, err)
		}
	})
}

// stall holds the first write of an approval until its request has
// expired by the store's clock: the approver's process read the request
// (and the store's time) before the expiry, then stalled — a GC pause, a
// paused VM, a slow network — before its write reached the store.
type stall struct {
	request.Records
	once sync.Once
}

func (s *stall) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	if r.State == string(request.Approved) {
		s.once.Do(func() {
			for {
				got, now, err := s.Records.Record(ctx, r.ID)
				if err != nil || !now.Before(got.Expires) {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return s.Records.UpdateRecord(ctx, r)
}

// An approval judged on a read from before the expiry and written after it
// is refused as expired: the write compares the expiry with the store's
// clock as it happens, in both stores.
func TestApprovalWrittenAfterExpiryIsRefused(t *testing.T) {
	stores(t, func(t *testing.T, _ *request.Store, recs request.Records) {
		s := request.NewStore(&stall{Records: recs})
		r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(9)}, Requester: "U1"}, 200*time.Millisecond, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Apply(ctx, r.ID, approve("U2"))
		if !errors.Is(err, request.ErrExpired) || got.State != request.Pending {
			t.Errorf("an approval written after the expiry = %s, %v; want refused as expired", got.State, err)
		}
	})
}

// waitDue waits until the store says request id is due.
func waitDue(t *testing.T, s *request.Store, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		due, _, err := s.Due(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range due {
			if r.ID == id {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never due", id)
}

// An approved request is due once its signal's deadline has passed; the
// sweep then closes it as abandoned, and the signaller's own record, when it
// comes, replaces that guess.
func TestAbandonedThenFinished(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		r, _, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(5)}, Requester: "U1"}, time.Hour, 0)
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Abandon, Why: "x"}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("a pending request abandoned: %v", err)
		}
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Approve, User: "U2", Budget: 50 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		waitDue(t, s, r.ID)
		got, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Abandon, Why: "may or may not have been sent"})
		if err != nil || got.State != request.Done || !got.Abandoned {
			t.Fatalf("abandon = %+v, %v", got, err)
		}
		got, err = s.Apply(ctx, r.ID, request.Event{Kind: request.Finish, Record: func(r *request.Request) { r.NotSent = "nothing was sent" }})
		if err != nil || got.Err != "" || got.NotSent != "nothing was sent" || got.Abandoned {
			t.Errorf("finish after abandon = %+v, %v", got, err)
		}
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Finish, Record: func(*request.Request) {}}); !errors.Is(err, request.ErrDecided) {
			t.Errorf("finished twice: %v", err)
		}
	})
}

// lostReply commits AddRecord and then reports an error, as a connection
// dropped after COMMIT does.
type lostReply struct{ request.Records }

func (l lostReply) AddRecord(ctx context.Context, r pg.Record, ttl, deadline time.Duration) (pg.Record, bool, error) {
	l.Records.AddRecord(ctx, r, ttl, deadline)
	return pg.Record{}, false, errors.New("unexpected EOF")
}

// An add whose reply was lost is recognised by its key and its nonce: the
// caller learns it made the request (and posts its card).
func TestAddWithLostReply(t *testing.T) {
	stores(t, func(t *testing.T, _ *request.Store, recs request.Records) {
		s := request.NewStore(lostReply{recs})
		r, created, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(6)}, Requester: "U1"}, time.Hour, 0)
		if err != nil || !created || r.ID == "" {
			t.Errorf("add with a lost reply = %+v, %v, %v", r, created, err)
		}
		again, created, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: r.Backend, Requester: "U1"}, time.Hour, 0)
		if err != nil || created || again.ID != r.ID {
			t.Errorf("a second add is the same request: %+v, %v, %v", again, created, err)
		}
	})
}

// A card whose post is overdue can be claimed again, once per due time.
func TestRepost(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		r, _, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(7)}, Requester: "U1"}, time.Hour, 50*time.Millisecond)
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Repost, Due: time.Hour}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("reposted while the first post is not overdue: %v", err)
		}
		waitDue(t, s, r.ID)
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Repost, Due: time.Hour}); err != nil {
			t.Errorf("repost: %v", err)
		}
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Repost, Due: time.Hour}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("reposted twice: %v", err)
		}
		got, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: "1.5"})
		if err != nil || got.CardTS != "1.5" || !got.Deadline.IsZero() {
			t.Errorf("posted = %+v, %v", got, err)
		}
	})
}

// A withdrawal is the requester's only.
func TestWithdrawIsTheRequesters(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		r, _, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(8)}, Requester: "U1"}, time.Hour, 0)
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Withdraw, User: "U2"}); !errors.Is(err, request.ErrNotYours) {
			t.Errorf("withdrawn by another: %v", err)
		}
		if _, err := s.Apply(ctx, r.ID, approve("U1")); !errors.Is(err, request.ErrSelf) {
			t.Errorf("approved by its requester: %v", err)
		}
		got, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Withdraw, User: "U1"})
		if err != nil || got.State != request.Withdrawn || !strings.Contains(string(got.State), "withdrawn") {
			t.Errorf("withdraw = %s, %v", got.State, err)
		}
	})
}

// A card still on its way keeps its request from being due: Waiting moves
// the card deadline ahead while the request is pending with no card, and
// never for a rule's request, whose deadline is when it acts.
func TestWaitingKeepsCardDue(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		r, _, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(10)}, Requester: "U1"}, time.Hour, 50*time.Millisecond)
		got, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Waiting, Due: time.Hour})
		if err != nil || got.Deadline.Sub(r.Deadline) < 50*time.Minute {
			t.Errorf("waiting = deadline %s (was %s), %v", got.Deadline, r.Deadline, err)
		}
		if due, _, _ := s.Due(ctx); slices.ContainsFunc(due, func(d request.Request) bool { return d.ID == r.ID }) {
			t.Errorf("due while its card waits")
		}
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: "1.5"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Waiting, Due: time.Hour}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("waiting after the card was recorded: %v", err)
		}
		auto, _, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(11)}, Requester: "autopilot:r",
			Auto: &request.Auto{Rule: "r", Mode: "act"}}, time.Hour, time.Minute)
		if _, err := s.Apply(ctx, auto.ID, request.Event{Kind: request.Waiting, Due: time.Hour}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("a rule's countdown moved: %v", err)
		}
	})
}

// lostWrite fails the first write of an approval — after committing it
// when commit is set (the connection dropped after COMMIT), before it
// otherwise — and fails the reads of the store from then on while
// down is set (the connection that would read it back is gone too).
type lostWrite struct {
	request.Records
	commit bool
	down   atomic.Bool
	once   sync.Once
}

func (s *lostWrite) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	lose := false
	if r.State == string(request.Approved) {
		s.once.Do(func() { lose = true })
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
	return false, fmt.Errorf("state store: request %d → approved: unexpected EOF", r.ID)
}

func (s *lostWrite) Record(ctx context.Context, id int64) (pg.Record, time.Time, error) {
	if s.down.Load() {
		return pg.Record{}, time.Time{}, fmt.Errorf("state store: request %d: connection refused", id)
	}
	return s.Records.Record(ctx, id)
}

// A write whose answer was lost, and which cannot be read back, is neither
// a success nor a failure to try again: Apply says ErrUnsure, and returns
// the request as it is if the write landed — which, in each store, it is
// exactly when the write did commit.
func TestLostAnswerUnreadIsUnsure(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%t", commit), func(t *testing.T) {
			stores(t, func(t *testing.T, _ *request.Store, recs request.Records) {
				lw := &lostWrite{Records: recs, commit: commit}
				s := request.NewStore(lw)
				r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(10)}, Requester: "U1"}, time.Hour, 0)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Apply(ctx, r.ID, approve("U2"))
				if !errors.Is(err, request.ErrUnsure) || request.Refused(err) {
					t.Fatalf("an approval whose answer was lost and could not be read back = %v; want ErrUnsure (not a refusal)", err)
				}
				if got.ID != r.ID || got.State != request.Approved || got.Decider != "U2" || got.Version != r.Version+1 {
					t.Errorf("returned %s %s by %q at version %d; want %s approved by U2 at version %d (as it is if it landed)", got.ID, got.State, got.Decider, got.Version, r.ID, r.Version+1)
				}
				lw.down.Store(false)
				stored, err := s.Get(ctx, r.ID)
				if err != nil {
					t.Fatal(err)
				}
				if landed := stored.State == request.Approved; landed != commit {
					t.Fatalf("stored %s with commit=%t", stored.State, commit)
				}
				if commit && (stored.Version != got.Version || stored.Decider != got.Decider || !stored.Decided.Equal(got.Decided)) {
					t.Errorf("landed as version %d by %q at %s; Apply returned version %d by %q at %s",
						stored.Version, stored.Decider, stored.Decided, got.Version, got.Decider, got.Decided)
				}
			})
		})
	}
}

// A closed request is due until its card is confirmed to show how it
// ended: the process that queued that edit may stop with it unsent, and
// another's sweep then shows it again. A confirmation of an older version
// confirms nothing.
func TestClosedIsDueUntilShown(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store, _ request.Records) {
		s.ShowWithin(50 * time.Millisecond)
		r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(1)}, Requester: "UREQ"}, time.Hour, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = s.Apply(ctx, r.ID, request.Event{Kind: request.Deny, User: "UAPP"}); err != nil {
			t.Fatal(err)
		}
		if r.Deadline.IsZero() {
			t.Fatal("a denied request is not watched until its card shows it")
		}
		waitDue(t, s, r.ID)
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Shown, Version: r.Version - 1}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("an older version shown: %v, want ErrNotDue", err)
		}
		again, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Reshow})
		if err != nil || again.Deadline.IsZero() {
			t.Fatalf("reshow: %v, deadline %v", err, again.Deadline)
		}
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Reshow}); !errors.Is(err, request.ErrNotDue) {
			t.Errorf("a second reshow before the new deadline: %v, want ErrNotDue", err)
		}
		shown, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Shown, Version: again.Version})
		if err != nil || !shown.Deadline.IsZero() {
			t.Fatalf("shown: %v, deadline %v", err, shown.Deadline)
		}
		time.Sleep(60 * time.Millisecond) // past the deadline it had: nothing is due now
		due, _, err := s.Due(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range due {
			if d.ID == r.ID {
				t.Errorf("request %s is still due once its card showed it", r.ID)
			}
		}
	})
}
