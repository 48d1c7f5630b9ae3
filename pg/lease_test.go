package pg_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// leaseStores opens n stores on a database of the lease tests' own: Renew
// counts every live replica of the database.
func leaseStores(t *testing.T, db string, n int) []*pg.Store {
	t.Helper()
	out := make([]*pg.Store, n)
	for i := range out {
		s, err := pg.OpenStore(ctx(t), pgtest.Database(t, db))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out[i] = s
		if i == 0 {
			freshLeases(t, db)
		}
	}
	return out
}

// Many replicas racing for one lease: exactly one takes it; the holder
// renews it; nobody else takes it before it expires; anyone may after.
func TestLeaseTakenOnce(t *testing.T) {
	t.Parallel()
	ss := leaseStores(t, "lease_once", 3)
	const ttl = time.Hour
	var mu sync.Mutex
	winners := map[string]bool{}
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			me := []string{"r0", "r1", "r2", "r3"}[i%4]
			ok, err := ss[i%3].TakeLease(ctx(t), me, "t1", ttl)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				winners[me] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("replicas %v took the lease, want one", winners)
	}
	var holder string
	for h := range winners {
		holder = h
	}
	if ok, err := ss[0].TakeLease(ctx(t), holder, "t1", ttl); !ok || err != nil {
		t.Errorf("the holder could not renew: %v %v", ok, err)
	}
	if ok, _ := ss[1].TakeLease(ctx(t), "other", "t1", ttl); ok {
		t.Error("a live lease was taken by another replica")
	}
	// Expired: anyone may take it; its holder's renewal then renews nothing.
	if ok, _ := ss[2].TakeLease(ctx(t), holder, "t1", -time.Second); !ok {
		t.Fatal("the holder could not shorten its own lease")
	}
	if ok, err := ss[1].TakeLease(ctx(t), "other", "t1", ttl); !ok || err != nil {
		t.Fatalf("an expired lease was not taken: %v %v", ok, err)
	}
	r, err := ss[0].Renew(ctx(t), holder, "i-"+holder, nil, ttl)
	if err != nil || slices.Contains(r.Held, "t1") {
		t.Errorf("the old holder still renews t1: %v %v", r.Held, err)
	}
}

// Renew counts the live replicas and returns the leases held; FreeTargets
// lists the longest free first and says which are overdue; Leave hands
// everything back, free at once.
func TestLeaseRenewFreeLeave(t *testing.T) {
	t.Parallel()
	ss := leaseStores(t, "lease_renew", 2)
	r, err := ss[0].Renew(ctx(t), "a", "ia", []string{"x"}, time.Hour)
	if err != nil || r.Live != 1 || len(r.Held) != 0 || r.Lost {
		t.Fatalf("first renew = %+v %v", r, err)
	}
	if r, _ = ss[1].Renew(ctx(t), "b", "ib", nil, time.Hour); r.Live != 2 {
		t.Errorf("live = %d, want 2", r.Live)
	}
	// A replica whose heartbeat expired no longer counts.
	if _, err := ss[1].Renew(ctx(t), "dead", "id", nil, -time.Second); err != nil {
		t.Fatal(err)
	}
	if r, _ = ss[0].Renew(ctx(t), "a", "ia", []string{"x"}, time.Hour); r.Live != 2 {
		t.Errorf("live with a dead replica = %d, want 2", r.Live)
	}
	for _, tc := range []struct {
		who, target string
		ttl         time.Duration
	}{{"a", "x", time.Hour}, {"dead", "y", -time.Second}} {
		if ok, err := ss[0].TakeLease(ctx(t), tc.who, tc.target, tc.ttl); !ok || err != nil {
			t.Fatalf("take %s: %v %v", tc.target, ok, err)
		}
	}
	free, err := ss[1].FreeTargets(ctx(t), []string{"z", "x", "y"}, time.Hour)
	if err != nil || !slices.Equal(free, []pg.Free{{Target: "y"}, {Target: "z"}}) {
		t.Errorf("free = %v %v, want the expired y first, then z", free, err)
	}
	if free, _ := ss[1].FreeTargets(ctx(t), []string{"y"}, 0); !slices.Equal(free, []pg.Free{{Target: "y", Overdue: true}}) {
		t.Errorf("free with no grace = %v, want y overdue", free)
	}
	if r, _ := ss[0].Renew(ctx(t), "a", "ia", []string{"x"}, time.Hour); !slices.Equal(r.Held, []string{"x"}) {
		t.Errorf("held = %v", r.Held)
	}
	if known, err := ss[1].KnownTargets(ctx(t)); err != nil || !slices.Equal(known, []string{"x"}) {
		t.Errorf("known = %v %v", known, err)
	}
	if err := ss[0].Leave(ctx(t), "a", "ia"); err != nil {
		t.Fatal(err)
	}
	if r, _ = ss[1].Renew(ctx(t), "b", "ib", nil, time.Hour); r.Live != 1 {
		t.Errorf("live after a left = %d, want 1", r.Live)
	}
	if free, _ := ss[1].FreeTargets(ctx(t), []string{"x"}, time.Hour); !slices.Equal(free, []pg.Free{{Target: "x"}}) {
		t.Errorf("a's lease is not free after it left: %v", free)
	}
	if ok, _ := ss[1].TakeLease(ctx(t), "b", "x", time.Hour); !ok {
		t.Error("a lease handed back could not be taken")
	}
	if known, _ := ss[1].KnownTargets(ctx(t)); len(known) != 0 {
		t.Errorf("known after a left = %v", known)
	}
}

// One name, two live processes: the second cannot join, and a renewal by
// the one that lost its name renews nothing.
func TestLeaseNameHeldByOneProcess(t *testing.T) {
	t.Parallel()
	ss := leaseStores(t, "lease_name", 2)
	if err := ss[0].Join(ctx(t), "same", "p1", time.Hour); err != nil {
		t.Fatal(err)
	}
	err := ss[1].Join(ctx(t), "same", "p2", time.Hour)
	if !errors.Is(err, pg.ErrNameInUse) || !strings.Contains(err.Error(), "p1") {
		t.Errorf("a second process joined as the same name: %v", err)
	}
	if ok, _ := ss[0].TakeLease(ctx(t), "same", "t", time.Hour); !ok {
		t.Fatal("take")
	}
	if r, err := ss[1].Renew(ctx(t), "same", "p2", nil, time.Hour); err != nil || !r.Lost || len(r.Held) != 0 {
		t.Errorf("the other process's renewal = %+v %v, want lost", r, err)
	}
	if r, _ := ss[0].Renew(ctx(t), "same", "p1", nil, time.Hour); r.Lost || !slices.Equal(r.Held, []string{"t"}) {
		t.Errorf("the holder's renewal = %+v", r)
	}
	// Once its row has expired, the name may be taken.
	if _, err := ss[0].Renew(ctx(t), "same", "p1", nil, -time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ss[1].Join(ctx(t), "same", "p2", time.Hour); err != nil {
		t.Errorf("an expired name could not be joined: %v", err)
	}
}

// freshLeases forgets the leases and replicas an earlier run (-count=n) of
// a test left in its database.
func freshLeases(t *testing.T, db string) {
	t.Helper()
	pgtest.ExecIn(t, pgtest.Database(t, db), "TRUNCATE pgkill_lease, pgkill_replica")
}
