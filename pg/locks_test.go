package pg

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg/pgtest"
)

// The blocking tree worked out from one read of pg_locks must say what
// pg_blocking_pids() says, waiter by waiter: a DDL queue (a soft block: the
// last waiter's mode conflicts with no holder, only with the waiter ahead),
// a hot row and an advisory lock.
func TestLockEdgesAgreeWithPgBlockingPIDs(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t, "lockedges")
	pgtest.Exec(t, "SELECT 1")
	setup := pgtest.NewSession(t, dsn, "edges_setup")
	setup.Exec(t, `CREATE TABLE IF NOT EXISTS ddl (id int);
		CREATE TABLE IF NOT EXISTS hotrow (id int PRIMARY KEY, v int); INSERT INTO hotrow VALUES (1, 0) ON CONFLICT DO NOTHING`)
	ddlHolder := pgtest.NewSession(t, dsn, "edges_ddl_holder")
	ddlHolder.Exec(t, "BEGIN; LOCK TABLE ddl IN ACCESS SHARE MODE")
	rowHolder := pgtest.NewSession(t, dsn, "edges_row_holder")
	rowHolder.Exec(t, "BEGIN; UPDATE hotrow SET v = v + 1 WHERE id = 1")
	advHolder := pgtest.NewSession(t, dsn, "edges_adv_holder")
	advHolder.Exec(t, "SELECT pg_advisory_lock(7002)")

	var waiters []*pgtest.Session
	wait := func(app, sql string) {
		s := pgtest.NewSession(t, dsn, app)
		s.Run(sql)
		waiters = append(waiters, s)
		waitWaiting(t, s.PID) // one at a time: the queue order is known
	}
	wait("edges_ddl_1", "BEGIN; LOCK TABLE ddl IN ACCESS EXCLUSIVE MODE")
	wait("edges_ddl_2", "SELECT count(*) FROM ddl")
	wait("edges_ddl_3", "BEGIN; LOCK TABLE ddl IN ROW EXCLUSIVE MODE")
	for range 10 {
		wait("edges_row", "UPDATE hotrow SET v = v + 1 WHERE id = 1")
	}
	wait("edges_adv", "SELECT pg_advisory_lock(7002)")
	wait("edges_adv", "SELECT pg_advisory_lock_shared(7002)")

	fromLocks := target(t, dsn, false)
	fromPIDs := target(t, dsn, true)
	a := withTree(t, fromLocks, Filter{Application: "edges_*"})
	b := withTree(t, fromPIDs, Filter{Application: "edges_*"})
	if a.NoTree != "" || b.NoTree != "" {
		t.Fatal(a.NoTree, b.NoTree)
	}
	byPID := map[int32]Backend{}
	for _, x := range b.Backends {
		byPID[x.PID] = x
	}
	if len(a.Backends) != len(b.Backends) || len(a.Backends) < 17 {
		t.Fatalf("listed %d and %d sessions", len(a.Backends), len(b.Backends))
	}
	mine := map[int32]Backend{}
	for _, x := range a.Backends {
		mine[x.PID] = x
	}
	ddl1, ddl2, holder := mine[waiters[0].PID], mine[waiters[1].PID], mine[ddlHolder.PID]
	if !slices.Equal(ddl2.BlockedBy, []int32{ddl1.PID}) || !holder.RootBlocker() || holder.BlockingTotal != 3 {
		t.Errorf("DDL queue: second waiter blocked by %v (want only the first, %d); holder root %v, blocks %d in all (want 3)",
			ddl2.BlockedBy, ddl1.PID, holder.RootBlocker(), holder.BlockingTotal)
	}
	if r := mine[rowHolder.PID]; r.BlockingTotal != 10 || !r.RootBlocker() {
		t.Errorf("row holder blocks %d in all, root %v; want 10", r.BlockingTotal, r.RootBlocker())
	}
	for _, x := range a.Backends {
		y := byPID[x.PID]
		if !slices.Equal(x.BlockedBy, y.BlockedBy) || x.Blocking != y.Blocking || x.BlockingTotal != y.BlockingTotal {
			t.Errorf("%s pid %d: from pg_locks blocked by %v, blocks %d/%d; pg_blocking_pids: %v, %d/%d",
				x.Application, x.PID, x.BlockedBy, x.Blocking, x.BlockingTotal, y.BlockedBy, y.Blocking, y.BlockingTotal)
		}
	}
}

func target(t *testing.T, dsn string, blockingPIDs bool) *Target {
	tg, err := NewTarget(TargetSpec{Name: "test", DSN: dsn}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tg.blockingPIDs = blockingPIDs
	t.Cleanup(tg.Close)
	return tg
}

// waitWaiting waits until pid waits for a heavyweight lock.
func waitWaiting(t *testing.T, pid int32) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pgtest.Int(t, "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never waited on a lock", pid)
		}
	}
}

// When the tree cannot be worked out within its budget — reading the lock
// waits (pg_blocking_pids, before 14) or counting them — the sessions are
// listed without it and NoTree says so: the target is not failed.
func TestListWithoutTreeOverBudget(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pgtest.Exec(t, "CREATE TABLE IF NOT EXISTS budget (id int)")
	holder := pgtest.NewSession(t, dsn, "budget_holder")
	holder.Exec(t, "BEGIN; LOCK TABLE budget IN ACCESS EXCLUSIVE MODE")
	waiter := pgtest.NewSession(t, dsn, "budget_waiter")
	waiter.Run("SELECT count(*) FROM budget")
	waitWaiting(t, waiter.PID)
	for _, blockingPIDs := range []bool{false, true} {
		tg := target(t, dsn, blockingPIDs)
		tg.treeBudget = -time.Second
		l, err := tg.List(context.Background(), Filter{Application: "budget_*"})
		if err != nil || len(l.Backends) != 2 || l.NoTree == "" {
			t.Fatalf("pg_blocking_pids %v: %+v, %v; want both sessions and NoTree", blockingPIDs, l, err)
		}
		for _, b := range l.Backends {
			if b.Blocking != 0 || b.BlockedBy != nil || b.RootBlocker() {
				t.Errorf("pg_blocking_pids %v: counts without a tree: %+v", blockingPIDs, b)
			}
		}
	}
}
