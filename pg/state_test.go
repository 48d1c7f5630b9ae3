package pg_test

import (
	"errors"
	"fmt"
	"slices"
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

// Records: one open record per key; of concurrent updates on one version
// exactly one lands, across processes; closed records are pruned and found
// by member; due ones are found by the store's clock.
func TestStoreRecordsDecideOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	ss := openStores(t, 3)
	key := fmt.Sprintf("cancel|once|%d", time.Now().UnixNano()) // unique per run: the tables outlive a test
	member := "m|" + key
	r, created, err := ss[0].AddRecord(ctx(t), pg.Record{Key: key, State: "a", Members: []string{member}, Doc: []byte(`{"n":1}`)}, time.Hour, 0)
	if err != nil || !created || r.State != "a" || !r.Open || r.Expires.Sub(r.Created) != time.Hour || !r.Deadline.IsZero() {
		t.Fatalf("add = %+v %v %v", r, created, err)
	}
	again, created, err := ss[1].AddRecord(ctx(t), pg.Record{Key: key, State: "a", Doc: []byte(`{"n":2}`)}, time.Hour, 0)
	if err != nil || created || again.ID != r.ID {
		t.Errorf("second open record for the same key: %+v %v %v", again, created, err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := r
			next.State, next.Open, next.Doc = "b", false, []byte(`{"n":3}`)
			ok, err := ss[i%3].UpdateRecord(ctx(t), next)
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
		t.Errorf("%d updates won, want 1", wins.Load())
	}
	got, now, err := ss[2].Record(ctx(t), r.ID)
	if err != nil || got.State != "b" || got.Open || string(got.Doc) != `{"n": 3}` || got.Version != r.Version+1 || now.Before(got.Created) {
		t.Errorf("record = %+v (%s) at %v, %v", got, got.Doc, now, err)
	}
	if ok, _ := ss[0].UpdateRecord(ctx(t), r); ok {
		t.Error("an update on a stale version was accepted")
	}
	with, err := ss[1].RecordsWith(ctx(t), member)
	if err != nil || len(with) != 1 || with[0].ID != r.ID {
		t.Errorf("records with its member = %+v, %v", with, err)
	}
	// Closed: a new record for the same key may be made.
	fresh, created, _ := ss[0].AddRecord(ctx(t), pg.Record{Key: key, State: "a", Doc: []byte(`{}`)}, -time.Second, 0)
	if !created {
		t.Error("a closed record blocks a new one")
	}
	due, _, err := ss[0].DueRecords(ctx(t))
	if err != nil || !slices.ContainsFunc(due, func(d pg.Record) bool { return d.ID == fresh.ID }) {
		t.Errorf("an open record past its expiry is not due: %v", err)
	}
	got.Decided = time.Now().Add(-48 * time.Hour)
	if ok, err := ss[0].UpdateRecord(ctx(t), got); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := ss[0].PruneRecords(ctx(t), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ss[0].Record(ctx(t), r.ID); !errors.Is(err, pg.ErrNotFound) {
		t.Errorf("pruned record: %v", err)
	}
	if open, err := ss[0].OpenRecords(ctx(t)); err != nil || !slices.ContainsFunc(open, func(o pg.Record) bool { return o.ID == fresh.ID }) {
		t.Errorf("the open record was pruned: %v", err)
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
