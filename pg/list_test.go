package pg_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// waitLockWaiters waits until n sessions of application app wait for a
// heavyweight lock (pg_locks.granted = false), or fails after a deadline.
func waitLockWaiters(t testing.TB, app string, n int) {
	t.Helper()
	conn, err := pgx.Connect(ctx(t), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got int
		err := conn.QueryRow(ctx(t), `SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND a.application_name = $1`, app).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d %s sessions wait on a lock", got, n, app)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A hot row: one transaction holds it, 150 sessions queue to update it.
// Each waiter's pg_blocking_pids() names every session queued ahead of it;
// the listing must still name the holder as the one root blocker and count
// every waiter exactly once.
func TestListHotRowPileUp(t *testing.T) {
	t.Parallel()
	const n = 150
	dsn := pgtest.Database(t, "pileup")
	pgtest.Exec(t, "SELECT 1")
	setup := pgtest.NewSession(t, dsn, "pileup_setup")
	setup.Exec(t, "CREATE TABLE IF NOT EXISTS hot (id int PRIMARY KEY, v int); INSERT INTO hot VALUES (1, 0) ON CONFLICT DO NOTHING")
	holder := pgtest.NewSession(t, dsn, "pileup_holder")
	holder.Exec(t, "BEGIN; UPDATE hot SET v = v + 1 WHERE id = 1")
	waiters := make([]*pgtest.Session, n)
	for i := range waiters {
		waiters[i] = pgtest.NewSession(t, dsn, "pileup_waiter")
		waiters[i].Run("UPDATE hot SET v = v + 1 WHERE id = 1")
	}
	waitLockWaiters(t, "pileup_waiter", n)
	tg := newTarget(t, dsn, pg.Options{})
	l := withTree(t, tg, pg.Filter{Application: "pileup_*"})
	if l.NoTree != "" {
		t.Fatalf("list: no tree: %q", l.NoTree)
	}
	var roots []pg.Backend
	var h pg.Backend
	direct := 0
	for _, b := range l.Backends {
		if b.RootBlocker() {
			roots = append(roots, b)
		}
		if b.PID == holder.PID {
			h = b
		}
		for _, p := range b.BlockedBy {
			if p == holder.PID {
				direct++
			}
		}
		if b.Application == "pileup_waiter" && len(b.BlockedBy) == 0 {
			t.Errorf("waiter %d blocked by nobody", b.PID)
		}
	}
	if len(roots) != 1 || roots[0].PID != holder.PID {
		t.Fatalf("root blockers %d (want only the holder %d): %+v", len(roots), holder.PID, roots)
	}
	if h.BlockingTotal != n || h.Blocking != direct || h.Blocking < 1 {
		t.Errorf("holder blocks %d directly, %d in all; want %d directly (as listed), %d in all", h.Blocking, h.BlockingTotal, direct, n)
	}
	holder.Exec(t, "COMMIT")
	for _, w := range waiters {
		if err := w.Result(t); err != nil {
			t.Error(err)
		}
	}
}

// A session of a role pgkill's role may not see is counted in Hidden and
// never listed; asking for it by pid says why and how to fix it.
func TestListHiddenSessions(t *testing.T) {
	t.Parallel()
	pgtest.Role(t, "hidden_app")
	blind := pgtest.Role(t, "hidden_blind") // neither pg_read_all_stats nor pg_signal_backend
	s := pgtest.NewSession(t, pgtest.DSNAs(t, "hidden_app"), "hidden_victim")
	s.Exec(t, "BEGIN; SELECT 1")
	tg := newTarget(t, blind, pg.Options{})
	l, err := tg.List(ctx(t), pg.Filter{Application: "hidden_victim"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Hidden != 1 || len(l.Backends) != 0 {
		t.Errorf("hidden %d, listed %+v; want 1 hidden, none listed", l.Hidden, l.Backends)
	}
	if l, _ := tg.List(ctx(t), pg.Filter{Application: "no_such_app"}); l.Hidden != 0 {
		t.Errorf("hidden %d for a filter no hidden session matches", l.Hidden)
	}
	_, err = tg.Backend(ctx(t), s.PID)
	if !errors.Is(err, pg.ErrHidden) || errors.Is(err, pg.ErrNotFound) ||
		!strings.Contains(err.Error(), "GRANT pg_read_all_stats TO hidden_blind") || !strings.Contains(err.Error(), "cannot see") {
		t.Errorf("Backend(hidden pid) = %v; want ErrHidden with the GRANT", err)
	}
	// With the grant it is listed.
	seeing := newTarget(t, pgtest.Role(t, "hidden_seeing", "pg_read_all_stats"), pg.Options{})
	if b, err := seeing.Backend(ctx(t), s.PID); err != nil || b.PID != s.PID {
		t.Errorf("with pg_read_all_stats: %+v, %v", b, err)
	}
}

func TestListQueryMax(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "query_max")
	s.Run("SELECT pg_sleep(60) /* " + strings.Repeat("x", 200) + " */")
	tg := newTarget(t, dsn, pg.Options{})
	waitBackend(t, tg, pg.Filter{Application: "query_max"}, s.PID, nil)
	tests := []struct {
		max       int
		len       int
		truncated bool
	}{{50, 50, true}, {0, 226, false}, {-1, 226, false}, {1000, 226, false}}
	for _, tc := range tests {
		l, err := tg.List(ctx(t), pg.Filter{Application: "query_max", QueryMax: tc.max})
		if err != nil || len(l.Backends) != 1 {
			t.Fatalf("QueryMax %d: %+v, %v", tc.max, l, err)
		}
		b := l.Backends[0]
		if len(b.Query) != tc.len || b.QueryTruncated != tc.truncated {
			t.Errorf("QueryMax %d: %d characters, truncated %v; want %d, %v", tc.max, len(b.Query), b.QueryTruncated, tc.len, tc.truncated)
		}
	}
}

func TestListFilterPatterns(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	a := pgtest.NewSession(t, dsn, "pat_alpha/1")
	a.Exec(t, "BEGIN; SELECT 1")
	b := pgtest.NewSession(t, dsn, "pat_beta")
	b.Exec(t, "BEGIN; SELECT 1")
	tg := newTarget(t, dsn, pg.Options{})
	waitBackend(t, tg, pg.Filter{}, b.PID, nil)
	tests := []struct {
		app  string
		want []int32
	}{
		{"pat_*", []int32{b.PID}}, // * stops at '/', as in every pgkill pattern
		{"pat_*/*", []int32{a.PID}},
		{"pat_?eta", []int32{b.PID}},
		{"pat_[ab]*", []int32{b.PID}},
		{"pat_beta", []int32{b.PID}},
		{"pat_", nil},
		{"'pat_beta' OR true", nil}, // never spliced into SQL
	}
	for _, tc := range tests {
		l, err := tg.List(ctx(t), pg.Filter{Application: tc.app})
		if err != nil {
			t.Fatalf("%q: %v", tc.app, err)
		}
		var got []int32
		for _, x := range l.Backends {
			got = append(got, x.PID)
		}
		if len(got) != len(tc.want) || (len(got) == 1 && got[0] != tc.want[0]) {
			t.Errorf("application %q: got %v, want %v", tc.app, got, tc.want)
		}
	}
	if _, err := tg.List(ctx(t), pg.Filter{User: "[a-"}); err == nil || !strings.Contains(err.Error(), "user filter") {
		t.Errorf("bad pattern: %v", err)
	}
	if err := (pg.Filter{Application: "[a-"}).Check(); err == nil || !strings.Contains(err.Error(), "application filter") {
		t.Errorf("Check(bad pattern) = %v", err)
	}
	if err := (pg.Filter{Database: "app_*", State: "active"}).Check(); err != nil {
		t.Errorf("Check(good filter) = %v", err)
	}
}

// Parallel workers are folded into their leader: never listed, counted in
// the leader's Workers.
func TestListParallelWorkersFold(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t, "parallel")
	pgtest.Exec(t, "SELECT 1")
	s := pgtest.NewSession(t, dsn, "parallel_leader")
	s.Exec(t, `CREATE TABLE IF NOT EXISTS par AS SELECT g AS x FROM generate_series(1, 100000) g;
		SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
		SET min_parallel_table_scan_size = 0; SET parallel_leader_participation = off`)
	// Each row sleeps: the scan runs far longer than any test, until cancelled.
	s.Run("SELECT count(*) FROM par WHERE pg_sleep(0.01) IS NOT NULL")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "parallel_leader"}, s.PID, func(b pg.Backend) bool { return b.Workers == 2 })
	l, err := tg.List(ctx(t), pg.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range l.Backends {
		if x.BackendType == "parallel worker" {
			t.Errorf("parallel worker listed: %+v", x)
		}
	}
	if b.BackendType != "client backend" {
		t.Errorf("leader = %+v", b)
	}
}
