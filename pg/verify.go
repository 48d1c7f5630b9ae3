package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Verification says whether a signalled backend has let go.
type Verification struct {
	Ended bool
	// How it ended: "session ended", "query ended" (cancel: a new statement or
	// none), or "" when it did not end.
	How   string
	After time.Duration // from the start of Verify to the observation
	// The last state seen while it was still there.
	State         State
	WaitEventType string
	WaitEvent     string
	// AbortedTxOpen: a cancel inside a transaction left it open and aborted
	// ("idle in transaction (aborted)") and it still held locks (Locks > 0,
	// or -1: they could not be counted) at the last observation: they are
	// held until the client rolls back, so Terminate may still be needed.
	// An aborted transaction seen holding no lock is not flagged.
	AbortedTxOpen bool
	// Locks is the number of locks the session held at the last
	// observation (granted rows of pg_locks, its own virtual transaction ID
	// excluded); 0 once the session has ended; -1 when not known (not
	// signalled, the database could not be asked, or the lock table did
	// not answer in time: a lock pile-up).
	Locks int
	// MaybeNext: by the first observation after the signal the session was
	// already running a statement that started before the signal. The
	// approved statement had ended by itself, and the signal may have
	// reached the next one.
	MaybeNext bool
}

// verifySetSQL looks at every member still being verified, in one
// autocommit statement on the lifeline (a fresh snapshot each poll), each
// through pg_stat_get_activity(pid): one entry, not the whole view.
const verifySetSQL = `
SELECT m.i::int, coalesce(a.state, ''), a.query_start, coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''),
       a.xact_start IS NOT NULL
FROM unnest($1::int[], $2::timestamptz[]) WITH ORDINALITY AS m(pid, backend_start, i)
JOIN LATERAL pg_stat_get_activity(m.pid) a ON a.backend_start = m.backend_start`

// heldLocksSQL counts the locks each session holds: the granted rows of
// pg_locks, without the session's own virtual transaction ID (every
// transaction holds that one; nobody waits on it for a lock). It reads the
// lock table, so it runs on the other connection, within the tree's budget.
const heldLocksSQL = `
SELECT l.pid, count(*)::int
FROM pg_locks l
WHERE l.granted AND l.pid = ANY ($1::int[])
  AND NOT (l.locktype = 'virtualxid' AND l.virtualxid = l.virtualtransaction)
GROUP BY l.pid`

// Verify polls until the signalled backend of out has ended what out.Action
// was meant to end, or timeout passes: VerifySet of one.
func (t *Target) Verify(ctx context.Context, out Outcome, timeout time.Duration) (Verification, error) {
	vs, err := t.VerifySet(ctx, []Outcome{out}, timeout)
	if err != nil {
		return Verification{Locks: -1}, err
	}
	return vs[0], nil
}

// VerifySet polls, one statement per poll for the whole set, until every
// member whose Result is Sent has ended what its action was meant to end,
// or timeout passes. For Terminate that is the session; for Cancel, the
// statement (the session gone, a new query_start, or no longer active).
// Cancel and finishing by itself look the same from outside, except when
// the first read already shows a statement that started before the signal
// (At): then MaybeNext is set and How says the signal may have reached that
// next statement. Members not Sent get a zero Verification (Locks -1).
func (t *Target) VerifySet(ctx context.Context, outs []Outcome, timeout time.Duration) ([]Verification, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	wait := 50 * time.Millisecond
	vs := make([]Verification, len(outs))
	var pending []int // indexes into outs
	for i, o := range outs {
		vs[i].Locks = -1
		if o.Result == Sent {
			pending = append(pending, i)
		}
	}
	for first := true; len(pending) > 0; first = false {
		seen, err := t.observe(ctx, outs, pending)
		if err != nil {
			return vs, fmt.Errorf("verify %d backends on %s: %w", len(pending), t.Name, err)
		}
		after := time.Since(start)
		var still []int
		for _, i := range pending {
			v := &vs[i]
			v.After = after
			o, ok := seen[i]
			if !ok {
				v.Ended, v.How, v.Locks = true, "session ended", 0
				continue
			}
			if judge(v, outs[i], o, first) {
				continue
			}
			still = append(still, i)
		}
		pending = still
		if len(pending) == 0 || !time.Now().Add(wait).Before(deadline) {
			return vs, nil
		}
		select {
		case <-ctx.Done():
			return vs, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
	return vs, nil
}

// observation is one member's row in verifySetSQL.
type observation struct {
	state, waitType, wait string
	queryStart            *time.Time
	inXact                bool
	locks                 int
}

func (t *Target) observe(ctx context.Context, outs []Outcome, pending []int) (map[int]observation, error) {
	pids, starts := make([]int32, len(pending)), make([]time.Time, len(pending))
	for j, i := range pending {
		pids[j], starts[j] = outs[i].ID.PID, outs[i].ID.BackendStart
	}
	seen, err := onLifeline(ctx, t, "the check of signalled sessions", reads, func(ctx context.Context, c *pgx.Conn) (map[int]observation, error) {
		seen := map[int]observation{}
		rows, err := c.Query(ctx, verifySetSQL, pids, starts)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var j int
			o := observation{locks: -1}
			if err := rows.Scan(&j, &o.state, &o.queryStart, &o.waitType, &o.wait, &o.inXact); err != nil {
				return nil, err
			}
			seen[pending[j-1]] = o
		}
		return seen, rows.Err()
	})
	if err != nil || len(seen) == 0 {
		return seen, err
	}
	counts := t.heldLocks(ctx, seen, outs)
	for i, o := range seen {
		if n, ok := counts[outs[i].ID.PID]; ok {
			o.locks = n
		} else if counts != nil {
			o.locks = 0
		}
		seen[i] = o
	}
	return seen, nil
}

// heldLocks counts the locks of the sessions seen, or returns nil when the
// lock table does not answer within the tree's budget (it is not waited
// for at all while an earlier read is stuck on it).
func (t *Target) heldLocks(ctx context.Context, seen map[int]observation, outs []Outcome) map[int32]int {
	if t.locks.stuck(t.budget()) {
		return nil
	}
	pids := make([]int32, 0, len(seen))
	for i := range seen {
		pids = append(pids, outs[i].ID.PID)
	}
	ctx, cancel := context.WithTimeout(ctx, t.budget())
	defer cancel()
	counts, err := call(ctx, t.locks, "a count of held locks", reads, func(ctx context.Context, c *pgx.Conn) (map[int32]int, error) {
		rows, err := c.Query(ctx, heldLocksSQL, pids)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		counts := map[int32]int{}
		for rows.Next() {
			var pid int32
			var n int
			if err := rows.Scan(&pid, &n); err != nil {
				return nil, err
			}
			counts[pid] = n
		}
		return counts, rows.Err()
	})
	if err != nil {
		return nil
	}
	return counts
}

// judge records observation o of the member signalled with out in v and
// reports whether verification of it is over.
func judge(v *Verification, out Outcome, o observation, first bool) bool {
	v.State, v.WaitEventType, v.WaitEvent, v.Locks = State(o.state), o.waitType, o.wait, o.locks
	// Aborted with its transaction still open (a savepoint was in use) and
	// holding locks: others may wait on it until the client rolls back. An
	// aborted transaction holding none harms nobody and is not flagged.
	v.AbortedTxOpen = v.State == StateIdleInTxAborted && o.inXact && o.locks != 0
	newStatement := o.queryStart == nil || !o.queryStart.Equal(out.ID.QueryStart)
	if first && newStatement && o.queryStart != nil && !out.At.IsZero() && !o.queryStart.After(out.At) {
		// The statement now running began before the signal: the approved
		// one had already ended, and the signal may have hit this one.
		v.MaybeNext = true
	}
	if out.Action == Cancel && (newStatement || v.State != StateActive) {
		v.Ended, v.How = true, "query ended"
		if v.MaybeNext {
			v.How = "the approved statement had already ended before the signal; the signal may have reached the statement after it"
		}
		return true
	}
	return false
}

// WhyStillRunning explains, from what PostgreSQL showed, why a signalled
// backend has not ended, and what to do next.
func WhyStillRunning(action Action, v Verification) string {
	switch {
	case v.AbortedTxOpen && v.Locks > 0:
		return fmt.Sprintf("The statement was cancelled but its transaction is still open (idle in transaction, aborted) and keeps its %d locks until the client rolls back. Terminate ends it.", v.Locks)
	case v.AbortedTxOpen:
		return "The statement was cancelled but its transaction is still open (idle in transaction, aborted) and keeps whatever locks it holds until the client rolls back (they could not be counted: the lock table did not answer in time). Terminate ends it."
	case v.State == StateIdleInTxAborted:
		return "The statement was cancelled; its transaction is still open but aborted (idle in transaction, aborted) and holds no locks. It ends when the client rolls back; Terminate ends the session."
	case action == Cancel && v.State.Idle():
		return "Cancel does nothing to a session that is idle in a transaction. Terminate ends it."
	case v.WaitEvent == "ClientWrite":
		return "It is blocked writing to a client that is not reading (ClientWrite); such a backend ignores cancel. Terminate ends it."
	case v.WaitEvent == "SyncRep":
		return "It waits for synchronous replication (SyncRep): its transaction is already committed locally; cancelling only stops the wait. Check the standby."
	case v.WaitEventType == "LWLock" || v.WaitEventType == "IO" || v.WaitEventType == "BufferPin":
		return fmt.Sprintf("It is in an uninterruptible section (waiting on %s/%s): PostgreSQL acts on a signal only when the backend reaches CHECK_FOR_INTERRUPTS, so it may end later. If it never does, a database restart (on RDS/Aurora: reboot or failover) is the last resort.", v.WaitEventType, v.WaitEvent)
	case action == Cancel:
		return "The signal was delivered but the statement is still running: it may catch the cancel (an EXCEPTION WHEN query_canceled handler) or be in a section that holds interrupts off. Terminate is the next step."
	default:
		return "The signal was delivered but the backend has not exited: it may be in an uninterruptible section (a lightweight lock, I/O on network storage) and acts on the signal only when it leaves it. Wait a little; a database restart (on RDS/Aurora: reboot or failover) is the last resort."
	}
}
