package pg

import (
	"slices"
	"testing"

	"github.com/pgkill/pgkill/pg/pgtest"
)

// The approval card shows, for a root blocker, what its waiters queue for
// and how many it blocks directly and in all, and for a session idle in a
// transaction how old the transaction is; for a waiter, the lock it wants.
// A row queue names its relation (the first waiter waits for the holder's
// transaction ID, the others for the row's tuple lock); a relation of
// another database is given by OID and database. Both ways of reading the
// lock waits (pg_locks alone, pg_blocking_pids before 14) agree.
func TestLockDetails(t *testing.T) {
	t.Parallel()
	dsn := pgtest.Database(t, "lockdetail")
	other := pgtest.Database(t, "lockdetail_other")
	pgtest.ExecIn(t, dsn, `CREATE TABLE IF NOT EXISTS ddl (id int);
		CREATE TABLE IF NOT EXISTS hotrow (id int PRIMARY KEY, v int); INSERT INTO hotrow VALUES (1, 0) ON CONFLICT DO NOTHING`)
	pgtest.ExecIn(t, other, "CREATE TABLE IF NOT EXISTS elsewhere (id int)")
	ddlHolder := pgtest.NewSession(t, dsn, "detail_ddl_holder")
	ddlHolder.Exec(t, "BEGIN; LOCK TABLE ddl IN ACCESS SHARE MODE")
	rowHolder := pgtest.NewSession(t, dsn, "detail_row_holder")
	rowHolder.Exec(t, "BEGIN; UPDATE hotrow SET v = v + 1 WHERE id = 1")
	otherHolder := pgtest.NewSession(t, other, "detail_other_holder")
	otherHolder.Exec(t, "BEGIN; LOCK TABLE elsewhere IN ACCESS EXCLUSIVE MODE")
	wait := func(dsn, app, sql string) *pgtest.Session {
		s := pgtest.NewSession(t, dsn, app)
		s.Run(sql)
		waitWaiting(t, s.PID)
		return s
	}
	ddlWaiter := wait(dsn, "detail_ddl_waiter", "BEGIN; LOCK TABLE ddl IN ACCESS EXCLUSIVE MODE")
	var rows []*pgtest.Session
	for range 4 {
		rows = append(rows, wait(dsn, "detail_row_waiter", "UPDATE hotrow SET v = v + 1 WHERE id = 1"))
	}
	otherWaiter := wait(other, "detail_other_waiter", "SELECT count(*) FROM elsewhere")

	for _, blockingPIDs := range []bool{false, true} {
		tg := target(t, dsn, blockingPIDs)
		l := withTree(t, tg, Filter{Application: "detail_*"})
		if l.NoTree != "" {
			t.Fatal(l.NoTree)
		}
		by := map[int32]Backend{}
		for _, b := range l.Backends {
			by[b.PID] = b
		}
		check := func(what string, got, want any) {
			t.Helper()
			if !equal(got, want) {
				t.Errorf("pg_blocking_pids %v: %s = %+v, want %+v", blockingPIDs, what, got, want)
			}
		}
		ddl := Lock{Type: "relation", Mode: "AccessExclusiveLock", Relation: "ddl"}
		check("ddl waiter waits for", by[ddlWaiter.PID].WaitsFor, &ddl)
		check("ddl holder's queue", by[ddlHolder.PID].Queue, []LockQueue{{Lock: ddl, Sessions: 1}})
		h := by[rowHolder.PID]
		check("row holder's queue", h.Queue, []LockQueue{{Lock: Lock{Type: "transactionid", Mode: "ShareLock", Relation: "hotrow"}, Sessions: 1}})
		check("row holder blocks directly, in all", [2]int{h.Blocking, h.BlockingTotal}, [2]int{1, 4})
		if h.XactAge <= 0 || h.XactAge != h.Duration {
			t.Errorf("row holder idle in transaction: XactAge %s, Duration %s", h.XactAge, h.Duration)
		}
		// Each later waiter waits for the row's tuple lock, held by the
		// first, and directly for the one ahead of it.
		for i, s := range rows[1:] {
			b := by[s.PID]
			check("row waiter waits for", b.WaitsFor, &Lock{Type: "tuple", Mode: "ExclusiveLock", Relation: "hotrow"})
			check("row waiter blocked by", b.BlockedBy, []int32{rows[i].PID})
		}
		w := by[otherWaiter.PID].WaitsFor
		if w == nil || w.Relation != "" || w.RelationOID == 0 || w.Database != "lockdetail_other" || w.Mode != "AccessShareLock" {
			t.Errorf("pg_blocking_pids %v: a wait in another database: %+v", blockingPIDs, w)
		}
	}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case *Lock:
		y := b.(*Lock)
		return (x == nil) == (y == nil) && (x == nil || *x == *y)
	case []LockQueue:
		return slices.Equal(x, b.([]LockQueue))
	case []int32:
		return slices.Equal(x, b.([]int32))
	}
	return a == b
}
