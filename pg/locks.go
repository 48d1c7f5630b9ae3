package pg

import (
	"time"

	"github.com/jackc/pgx/v5"
)

// locksSQL reads, in one read of pg_locks, every lock on an object that
// some session waits for (granted = false), whatever the waiter's
// wait_event_type says: for about a second after deadlock_timeout a lock
// waiter runs the deadlock check and shows LWLock/LockManager, and filtering
// on wait_event_type = 'Lock' missed its edges. Who blocks whom is then
// worked out in Go (lockEdges), the way pg_blocking_pids() does it, instead
// of calling pg_blocking_pids() once per waiter: each call takes the lock
// manager's shared state and copies the whole wait queue, so with 1,000
// sessions queued on one row the calls alone took over a second (more while
// their deadlock checks hold the lock partitions).
//
// pg_locks is read only when some session waits on a Lock or an LWLock:
// reading it takes every lock partition and costs as much as pg_stat_activity
// itself, for nothing when nobody waits. The check reads the
// pg_stat_activity snapshot sessionsSQL took in the same transaction, one
// field per backend: building the view's rows again (query texts and all)
// cost a third of a plain read.
// Prepared transactions hold locks with no pid: they read as pid 0.
// waitstart (14+) orders each lock's queue.
const locksSQL = `
WITH l AS MATERIALIZED (
  SELECT (l.locktype, l.database, l.relation, l.page, l.tuple, l.virtualxid, l.transactionid,
          l.classid, l.objid, l.objsubid)::text AS obj,
         coalesce(l.pid, 0) AS pid, l.mode, l.granted, l.waitstart
  FROM pg_locks l
  WHERE l.mode <> 'SIReadLock'
)
SELECT l.obj, l.pid, l.mode, l.granted, l.waitstart
FROM l
WHERE l.obj IN (SELECT w.obj FROM l w WHERE NOT w.granted)
  AND EXISTS (SELECT FROM pg_stat_get_backend_idset() b(id)
              WHERE pg_stat_get_backend_wait_event_type(b.id) IN ('Lock', 'LWLock'))`

// blockingPIDsSQL is how lock waits are read before PostgreSQL 14, which
// has no pg_locks.waitstart to order a queue by: pg_blocking_pids() for
// each session waiting in pg_locks, only until the budget $1 (seconds) has
// passed. Later rows come back NULL and the tree is reported as not
// computed rather than the statement running into statement_timeout.
const blockingPIDsSQL = `
SELECT w.pid,
       CASE WHEN clock_timestamp() < statement_timestamp() + make_interval(secs => $1::float8)
            THEN pg_blocking_pids(w.pid) END
FROM (SELECT DISTINCT l.pid FROM pg_locks l WHERE NOT l.granted AND l.pid IS NOT NULL AND l.pid <> pg_backend_pid()) w
WHERE EXISTS (SELECT FROM pg_stat_get_backend_idset() b(id)
              WHERE pg_stat_get_backend_wait_event_type(b.id) IN ('Lock', 'LWLock'))`

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
	obj     string
	pid     int32
	mode    int
	granted bool
	since   *time.Time // waitstart: when the wait began; nil while just starting
}

// readLocks reads locksSQL's answer and turns it into waiter → blockers.
func readLocks(br pgx.BatchResults, leader map[int32]int32) (map[int32][]int32, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var locks []lockRow
	for rows.Next() {
		var r lockRow
		var mode string
		if err := rows.Scan(&r.obj, &r.pid, &mode, &r.granted, &r.since); err != nil {
			return nil, err
		}
		r.mode = lockModes[mode]
		locks = append(locks, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return lockEdges(locks, leader), nil
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
func readBlockingPIDs(br pgx.BatchResults) (map[int32][]int32, bool, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, false, err
	}
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
