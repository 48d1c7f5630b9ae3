package pg

import (
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// locksSQL reads, in one read of pg_locks, every lock on an object that
// some session waits for (granted = false), whatever the waiter's
// wait_event_type says: for about a second after deadlock_timeout a lock
// waiter runs the deadlock check and shows LWLock/LockManager. Who blocks
// whom is then worked out in Go (lockEdges), the way pg_blocking_pids()
// does it, instead of calling pg_blocking_pids() once per waiter: each call
// takes the lock manager's shared state and copies the whole wait queue,
// so the calls grow with the square of a queue's length (seconds for a
// thousand sessions queued on one row: docs/benchmarks.md).
//
// It also reads the row (tuple) locks held by sessions that wait for a
// transaction ID: such a waiter is after a row of that relation, which is
// how its wait is named. A relation is named (regclass) only in the
// database pgkill is connected to; in another one the same OID would name
// something else, so only its OID and database are given.
// Prepared transactions hold locks with no pid: they read as pid 0.
// waitstart (14+) orders each lock's queue; locksSQL13 reads NULL.
const locksSQL = `
WITH l AS MATERIALIZED (
  SELECT (l.locktype, l.database, l.relation, l.page, l.tuple, l.virtualxid, l.transactionid,
          l.classid, l.objid, l.objsubid)::text AS obj,
         coalesce(l.pid, 0) AS pid, l.mode, l.granted, l.waitstart, l.locktype, l.database, l.relation
  FROM pg_locks l
  WHERE l.mode <> 'SIReadLock'
)
SELECT l.obj, l.pid, l.mode, l.granted, l.waitstart, l.locktype,
       coalesce(l.database, 0), coalesce(l.relation, 0),
       CASE WHEN l.relation IS NOT NULL
             AND l.database IN (0, (SELECT datid FROM pg_stat_get_activity(pg_backend_pid())))
            THEN l.relation::regclass::text END
FROM l
WHERE l.obj IN (SELECT w.obj FROM l w WHERE NOT w.granted)
   OR (l.locktype = 'tuple' AND l.granted
       AND l.pid IN (SELECT w.pid FROM l w WHERE NOT w.granted AND w.locktype = 'transactionid'))`

var locksSQL13 = strings.ReplaceAll(locksSQL, "l.waitstart", "NULL::timestamptz")

// blockingPIDsSQL is how lock waits are read before PostgreSQL 14, which
// has no pg_locks.waitstart to order a queue by: pg_blocking_pids() for
// each session waiting in pg_locks, only until the budget $1 (seconds) has
// passed. Later rows come back NULL and the tree is reported as not
// computed rather than the statement running on.
const blockingPIDsSQL = `
SELECT w.pid,
       CASE WHEN clock_timestamp() < statement_timestamp() + make_interval(secs => $1::float8)
            THEN pg_blocking_pids(w.pid) END
FROM (SELECT DISTINCT l.pid FROM pg_locks l WHERE NOT l.granted AND l.pid IS NOT NULL AND l.pid <> pg_backend_pid()) w`

// Lock modes, in PostgreSQL's order (lockdefs.h).
var lockModes = map[string]int{
	"AccessShareLock": 1, "RowShareLock": 2, "RowExclusiveLock": 3, "ShareUpdateExclusiveLock": 4,
	"ShareLock": 5, "ShareRowExclusiveLock": 6, "ExclusiveLock": 7, "AccessExclusiveLock": 8,
}

// lockConflicts[m] is the set of modes (bit n = mode n) that conflict with
// mode m: the table in lock.c (LockConflicts) and in the manual's "Table-Level
// Lock Modes"; advisory, tuple, transaction and other locks use the same one.
var lockConflicts = [9]uint16{
	1: 1 << 8,
	2: 1<<7 | 1<<8,
	3: 1<<5 | 1<<6 | 1<<7 | 1<<8,
	4: 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8,
	5: 1<<3 | 1<<4 | 1<<6 | 1<<7 | 1<<8,
	6: 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8,
	7: 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8,
	8: 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8,
}

func conflicts(a, b int) bool { return a > 0 && b > 0 && lockConflicts[a]&(1<<b) != 0 }

// lockRow is one row of locksSQL.
type lockRow struct {
	obj      string
	pid      int32
	mode     int
	granted  bool
	since    *time.Time // waitstart: when the wait began; nil while just starting
	lockType string
	modeName string
	db, rel  uint32
	relName  *string
}

// lockRead is what one read of the lock table says: its rows, and before
// PostgreSQL 14 who blocks whom as pg_blocking_pids() said it.
type lockRead struct {
	rows     []lockRow
	pids     map[int32][]int32 // from pg_blocking_pids(); nil: work it out from rows
	complete bool              // false: pg_blocking_pids() was cut short by the budget
}

// edges is waiter → blockers as pg_blocking_pids() defines them; leader
// maps parallel workers to their leader.
func (r lockRead) edges(leader map[int32]int32) map[int32][]int32 {
	if r.pids != nil {
		return r.pids
	}
	return lockEdges(r.rows, leader)
}

// lockWant is the lock a session waits for.
type lockWant struct {
	typ, mode, relName string
	db, rel            uint32
}

// readLocks reads locksSQL's answer.
func readLocks(rows pgx.Rows) ([]lockRow, error) {
	defer rows.Close()
	var locks []lockRow
	for rows.Next() {
		var r lockRow
		if err := rows.Scan(&r.obj, &r.pid, &r.modeName, &r.granted, &r.since, &r.lockType, &r.db, &r.rel, &r.relName); err != nil {
			return nil, err
		}
		r.mode = lockModes[r.modeName]
		locks = append(locks, r)
	}
	return locks, rows.Err()
}

// wants is the lock each waiting session asks for. A wait for a
// transaction ID is a wait for a row that transaction locked: it is named
// by the relation of the row lock (tuple) the waiter holds meanwhile.
func wants(locks []lockRow) map[int32]lockWant {
	rowOf := map[int32]lockRow{}
	for _, r := range locks {
		if r.granted && r.lockType == "tuple" {
			rowOf[r.pid] = r
		}
	}
	out := map[int32]lockWant{}
	for _, r := range locks {
		if r.granted {
			continue
		}
		w := lockWant{typ: r.lockType, mode: r.modeName, db: r.db, rel: r.rel}
		if r.relName != nil {
			w.relName = *r.relName
		}
		if t, ok := rowOf[r.pid]; ok && r.lockType == "transactionid" {
			w.db, w.rel = t.db, t.rel
			if t.relName != nil {
				w.relName = *t.relName
			}
		}
		out[r.pid] = w
	}
	return out
}

// lockEdges applies pg_blocking_pids()'s definition to every waiter at once.
// A session blocks a waiter when, on the object the waiter waits for, it
// either holds a mode that conflicts with the requested one (a hard block)
// or waits itself, ahead in the queue, for a conflicting mode (a soft block:
// a lock request queued behind an ACCESS EXCLUSIVE waits even when its mode
// conflicts with no holder). Members of one lock group (a parallel leader and
// its workers) never block each other, and every pid is reported as its
// leader, as pg_blocking_pids() does. Queue order is taken from waitstart;
// a waiter whose waitstart is not yet set counts as the last to arrive.
func lockEdges(locks []lockRow, leader map[int32]int32) map[int32][]int32 {
	group := func(pid int32) int32 {
		if l, ok := leader[pid]; ok {
			return l
		}
		return pid
	}
	byObj := map[string][]lockRow{}
	for _, r := range locks {
		byObj[r.obj] = append(byObj[r.obj], r)
	}
	edges := map[int32][]int32{}
	for _, rs := range byObj {
		for _, w := range rs {
			if w.granted {
				continue
			}
			wg := group(w.pid)
			for _, o := range rs {
				og := group(o.pid)
				if og == wg || !conflicts(o.mode, w.mode) {
					continue
				}
				if o.granted || ahead(o.since, w.since) {
					edges[wg] = append(edges[wg], og)
				}
			}
		}
	}
	return edges
}

// ahead reports whether a wait that began at a is ahead of one that began
// at b in the queue; a wait not yet stamped is the newest.
func ahead(a, b *time.Time) bool {
	switch {
	case a == nil:
		return false
	case b == nil:
		return true
	}
	return a.Before(*b)
}

// readBlockingPIDs reads blockingPIDsSQL's answer; complete is false when
// the budget cut it short.
func readBlockingPIDs(rows pgx.Rows) (map[int32][]int32, bool, error) {
	defer rows.Close()
	edges := map[int32][]int32{}
	complete := true
	for rows.Next() {
		var pid int32
		var blockers []int32
		if err := rows.Scan(&pid, &blockers); err != nil {
			return nil, false, err
		}
		if blockers == nil {
			complete = false
		}
		if len(blockers) > 0 {
			edges[pid] = blockers
		}
	}
	return edges, complete, rows.Err()
}
