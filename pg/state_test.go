package pg_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func openStores(t *testing.T, n int) []*pg.Store {
	t.Helper()
	stores := make([]*pg.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range stores { // at once: schema creation must not race
		wg.Add(1)
		go func() { defer wg.Done(); stores[i], errs[i] = pg.OpenStore(ctx(t), pgtest.Database(t, "state_pg")) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stores[i].Close)
	}
	return stores
}

func TestStoreRequestsDecideOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	ss := openStores(t, 3)
	key := fmt.Sprintf("cancel|once|%d", time.Now().UnixNano()) // unique per run: the tables outlive a test
	r, created, err := ss[0].AddRequest(ctx(t), key, []byte(`{"n":1}`))
	if err != nil || !created || r.State != "pending" {
		t.Fatalf("add = %+v %v %v", r, created, err)
	}
	again, created, err := ss[1].AddRequest(ctx(t), key, []byte(`{"n":2}`))
	if err != nil || created || again.ID != r.ID {
		t.Errorf("second pending request for the same backend: %+v %v %v", again, created, err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := ss[i%3].Update(ctx(t), r.ID, r.Version, "approved", []byte(`{"n":3}`))
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d transitions won, want 1", wins.Load())
	}
	got, err := ss[2].Request(ctx(t), r.ID)
	if err != nil || got.State != "approved" || string(got.Doc) != `{"n": 3}` {
		t.Errorf("request = %+v (%s), %v", got, got.Doc, err)
	}
	if ok, _ := ss[0].Update(ctx(t), r.ID, r.Version, "done", []byte(`{}`)); ok {
		t.Error("an update on a stale version was accepted")
	}
	if ok, _ := ss[0].Update(ctx(t), r.ID, got.Version, "done", []byte(`{}`)); !ok {
		t.Error("approved → done refused")
	}
	done, err := ss[1].RequestsByDedup(ctx(t), []string{key, "terminate|once"}, "done")
	if err != nil || len(done) != 1 || done[0].ID != r.ID {
		t.Errorf("done = %+v, %v", done, err)
	}
	// Decided: a new request for the same backend may be made.
	if _, created, _ := ss[0].AddRequest(ctx(t), key, []byte(`{}`)); !created {
		t.Error("a decided request blocks a new one")
	}
	if err := ss[0].PruneRequests(ctx(t), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := ss[0].Request(ctx(t), r.ID); !errors.Is(err, pg.ErrNotFound) {
		t.Errorf("pruned request: %v", err)
	}
	if pending, err := ss[0].RequestsIn(ctx(t), "pending"); err != nil || len(pending) == 0 {
		t.Errorf("the pending request was pruned: %v %v", pending, err)
	}
}

func TestStoreAlerts(t *testing.T) {
	t.Parallel()
	ss := openStores(t, 2)
	pgtest.Exec(t, "SELECT 1")
	key := fmt.Sprintf("store_t|%d", time.Now().UnixNano())
	ok, _, err := ss[0].ClaimAlert(ctx(t), "store_t", key, []byte(`{"ts":""}`))
	if err != nil || !ok {
		t.Fatalf("claim = %v %v", ok, err)
	}
	if err := ss[0].PutAlert(ctx(t), "store_t", key, []byte(`{"ts":"1.2"}`)); err != nil {
		t.Fatal(err)
	}
	ok, doc, err := ss[1].ClaimAlert(ctx(t), "store_t", key, []byte(`{"ts":""}`))
	if err != nil || ok || string(doc) != `{"ts": "1.2"}` {
		t.Errorf("second claim = %v %s %v", ok, doc, err)
	}
	all, err := ss[1].Alerts(ctx(t), "store_t")
	if err != nil || len(all) != 1 {
		t.Errorf("alerts = %v %v", all, err)
	}
	if err := ss[1].DeleteAlert(ctx(t), key); err != nil {
		t.Fatal(err)
	}
	if all, _ := ss[0].Alerts(ctx(t), "store_t"); len(all) != 0 {
		t.Errorf("deleted alert still there: %v", all)
	}
	// A late record of the post (a replica that lost the target's lease)
	// does not bring back an alert another replica resolved.
	if err := ss[0].PutAlert(ctx(t), "store_t", key, []byte(`{"ts":"1.2"}`)); err != nil {
		t.Fatal(err)
	}
	if all, _ := ss[1].Alerts(ctx(t), "store_t"); len(all) != 0 {
		t.Errorf("a resolved alert came back: %v", all)
	}
}

func TestStoreUnreachable(t *testing.T) {
	t.Parallel()
	_, err := pg.OpenStore(ctx(t), "postgres://u:sekrit@127.0.0.1:1/x?sslmode=disable&connect_timeout=1")
	if err == nil || !errors.Is(err, pg.ErrUnavailable) {
		t.Errorf("err = %v", err)
	}
}
