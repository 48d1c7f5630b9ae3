package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// cuttable is the real store with a switch that makes every call fail, as
// a network partition would.
type cuttable struct {
	*pg.Store
	cut atomic.Bool
}

var errCut = errors.New("state store: connection refused")

func (c *cuttable) Renew(ctx context.Context, replica, instance string, targets []string, ttl time.Duration) (pg.Renewal, error) {
	if c.cut.Load() {
		return pg.Renewal{}, errCut
	}
	return c.Store.Renew(ctx, replica, instance, targets, ttl)
}

// follower records what it is told to poll.
type follower struct {
	mu   sync.Mutex
	held []string
}

func (f *follower) Hold(targets []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = slices.Clone(targets)
}

func (f *follower) get() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.held)
}

func store(t *testing.T, db string) *cuttable {
	t.Helper()
	s, err := pg.OpenStore(context.Background(), pgtest.Database(t, db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	// -count=n: forget the leases and replicas an earlier run left behind.
	pgtest.ExecIn(t, pgtest.Database(t, db), "TRUNCATE pgkill_lease, pgkill_replica")
	return &cuttable{Store: s}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Replicas joining and leaving: each holds its fair share, no target is
// held twice, every target is held by someone.
func TestFairShare(t *testing.T) {
	s := store(t, "lease_share")
	targets := []string{"a", "b", "c", "d", "e"}
	names := func() []string { return targets }
	var ks []*Keeper
	var fs []*follower
	add := func() {
		ks = append(ks, New(s, fmt.Sprintf("k%d", len(ks)), time.Hour, names, quiet))
		fs = append(fs, &follower{})
	}
	rounds := func() {
		for range 3 { // a replica over its share hands over in one round; the others take in the next
			for i, k := range ks {
				k.round(context.Background(), fs[i])
			}
		}
	}
	check := func(share int) {
		t.Helper()
		var all []string
		for i, f := range fs {
			h := f.get()
			if len(h) > share {
				t.Errorf("k%d holds %v, over its share %d", i, h, share)
			}
			all = append(all, h...)
		}
		slices.Sort(all)
		if !slices.Equal(all, targets) {
			t.Errorf("held together: %v, want each of %v once", all, targets)
		}
	}
	add()
	rounds()
	check(5)
	add()
	rounds()
	check(3)
	add()
	rounds()
	check(2)
	// k0 leaves cleanly: the other two take its targets.
	if err := s.Leave(context.Background(), "k0", ks[0].instance); err != nil {
		t.Fatal(err)
	}
	ks, fs = ks[1:], fs[1:]
	rounds()
	check(3)
	// A target removed (discovery): its lease is handed back.
	targets = []string{"a", "b", "c"}
	rounds()
	check(2)
	ls, _ := s.Leases(context.Background())
	var held []string
	for _, l := range ls {
		if l.Holder != "" {
			held = append(held, l.Target)
		}
	}
	if !slices.Equal(held, []string{"a", "b", "c"}) {
		t.Errorf("leases held = %v, want a, b, c only", held)
	}
}

// A replica cut off from the store takes nothing, polls its targets until
// its leases would have expired, then none; another takes them over once
// they have.
func TestStoreLost(t *testing.T) {
	s := store(t, "lease_lost")
	const ttl = 300 * time.Millisecond
	names := func() []string { return []string{"x"} }
	cut := &cuttable{Store: s.Store}
	k1, f1 := New(cut, "cut", ttl, names, quiet), &follower{}
	k2, f2 := New(s, "other", ttl, names, quiet), &follower{}
	k1.round(context.Background(), f1)
	if !k1.Holds("x") || !slices.Equal(f1.get(), []string{"x"}) {
		t.Fatalf("k1 holds %v", f1.get())
	}
	cut.cut.Store(true)
	k1.round(context.Background(), f1)
	if st := k1.Status(); st.Err == nil {
		t.Error("status shows no error")
	}
	deadline := time.Now().Add(30 * time.Second)
	for k1.Holds("x") || len(f1.get()) > 0 || len(f2.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the cut: k1 holds %v (Holds %v), k2 holds %v", f1.get(), k1.Holds("x"), f2.get())
		}
		time.Sleep(ttl / 3)
		k1.round(context.Background(), f1)
		k2.round(context.Background(), f2)
		if len(f1.get()) > 0 && len(f2.get()) > 0 {
			t.Fatal("both replicas poll x")
		}
	}
	if st := k1.Status(); len(st.Held) != 0 || st.Err == nil {
		t.Errorf("status of the cut replica: %+v", st)
	}
}

// Replicas that know different fleets leave no target unpolled: the share
// is of every target some replica knows, a target only one replica knows
// is never handed back by it, and each polls what it can.
func TestDifferentFleetsLeaveNothingUnpolled(t *testing.T) {
	s := store(t, "lease_fleets")
	small, big := []string{"t1", "t2"}, []string{"t1", "t2", "t3", "t4"}
	k1, f1 := New(s, "small", time.Hour, func() []string { return small }, quiet), &follower{}
	k2, f2 := New(s, "big", time.Hour, func() []string { return big }, quiet), &follower{}
	// The big one alone first takes all four; the small one joins.
	for range 3 {
		k2.round(context.Background(), f2)
		k1.round(context.Background(), f1)
	}
	all := append(f1.get(), f2.get()...)
	slices.Sort(all)
	if !slices.Equal(all, big) || len(f1.get()) != 2 {
		t.Errorf("polled: small %v, big %v; want every target once, two each", f1.get(), f2.get())
	}
}

// A second process with the same replica name cannot join.
func TestJoinRefusesATakenName(t *testing.T) {
	s := store(t, "lease_join")
	names := func() []string { return []string{"x"} }
	if err := New(s, "twin", time.Hour, names, quiet).Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := New(s, "twin", time.Hour, names, quiet).Join(context.Background()); !errors.Is(err, pg.ErrNameInUse) {
		t.Errorf("the second process joined: %v", err)
	}
}
