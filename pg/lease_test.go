package pg_test

import (
	"slices"
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
	_, held, err := ss[0].Renew(ctx(t), holder, ttl)
	if err != nil || slices.Contains(held, "t1") {
		t.Errorf("the old holder still renews t1: %v %v", held, err)
	}
}

// Renew counts the live replicas and returns the leases held; FreeTargets
// lists expired leases first; Leave hands everything back.
func TestLeaseRenewFreeLeave(t *testing.T) {
	t.Parallel()
	ss := leaseStores(t, "lease_renew", 2)
	live, held, err := ss[0].Renew(ctx(t), "a", time.Hour)
	if err != nil || live != 1 || len(held) != 0 {
		t.Fatalf("first renew = %d %v %v", live, held, err)
	}
	if live, _, _ = ss[1].Renew(ctx(t), "b", time.Hour); live != 2 {
		t.Errorf("live = %d, want 2", live)
	}
	// A replica whose heartbeat expired no longer counts.
	if _, _, err := ss[1].Renew(ctx(t), "dead", -time.Second); err != nil {
		t.Fatal(err)
	}
	if live, _, _ = ss[0].Renew(ctx(t), "a", time.Hour); live != 2 {
		t.Errorf("live with a dead replica = %d, want 2", live)
	}
	for _, tc := range []struct {
		who, target string
		ttl         time.Duration
	}{{"a", "x", time.Hour}, {"dead", "y", -time.Second}} {
		if ok, err := ss[0].TakeLease(ctx(t), tc.who, tc.target, tc.ttl); !ok || err != nil {
			t.Fatalf("take %s: %v %v", tc.target, ok, err)
		}
	}
	free, err := ss[1].FreeTargets(ctx(t), []string{"z", "x", "y"})
	if err != nil || !slices.Equal(free, []string{"y", "z"}) {
		t.Errorf("free = %v %v, want the expired y first, then z", free, err)
	}
	if _, held, _ := ss[0].Renew(ctx(t), "a", time.Hour); !slices.Equal(held, []string{"x"}) {
		t.Errorf("held = %v", held)
	}
	if err := ss[0].Leave(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	ls, err := ss[1].Leases(ctx(t))
	if err != nil || len(ls) != 1 || ls[0].Target != "y" {
		t.Errorf("leases after a left = %+v %v", ls, err)
	}
	if live, _, _ = ss[1].Renew(ctx(t), "b", time.Hour); live != 1 {
		t.Errorf("live after a left = %d, want 1", live)
	}
	if err := ss[1].ReleaseLeases(ctx(t), "dead", []string{"y"}); err != nil {
		t.Fatal(err)
	}
	if ls, _ := ss[1].Leases(ctx(t)); len(ls) != 0 {
		t.Errorf("leases after release = %+v", ls)
	}
}

// freshLeases forgets the leases and replicas an earlier run (-count=n) of
// a test left in its database.
func freshLeases(t *testing.T, db string) {
	t.Helper()
	pgtest.ExecIn(t, pgtest.Database(t, db), "TRUNCATE pgkill_lease, pgkill_replica")
}
