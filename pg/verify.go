package pg

import (
	"context"
	"errors"
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
	// ("idle in transaction (aborted)"): its locks are still held until the
	// client rolls back, so Terminate may still be needed.
	AbortedTxOpen bool
	// Locks is the number of locks the session held at the last
	// observation (granted rows of pg_locks, its own virtual transaction ID
	// excluded); -1 when not read.
	Locks int
	// MaybeNext: by the first observation after the signal the session was
	// already running a statement that started before the signal. The
	// approved statement had ended by itself, and the signal may have
	// reached the next one.
	MaybeNext bool
}

// verifySQL looks at one session. Autocommit: a fresh pg_stat_activity
// snapshot each poll.
const verifySQL = `
SELECT coalesce(a.state, ''), a.query_start, coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''),
       a.xact_start IS NOT NULL
FROM pg_stat_activity a
WHERE a.pid = $1 AND a.backend_start = $2`

// Verify polls until the backend with identity id has ended what action was
// meant to end, or timeout passes. For Terminate that is the session; for
// Cancel, the statement (the session gone, a new query_start, or no longer
// active). Cancel and finishing by itself look the same from outside.
func (t *Target) Verify(ctx context.Context, action Action, id Identity, timeout time.Duration) (Verification, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	wait := 50 * time.Millisecond
	var v Verification
	for {
		var (
			state, wet, we string
			qs             *time.Time
			inXact         bool
		)
		err := t.do(ctx, func(ctx context.Context) error {
			return t.pool.QueryRow(ctx, verifySQL, id.PID, id.BackendStart).Scan(&state, &qs, &wet, &we, &inXact)
		})
		v.After = time.Since(start)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			v.Ended, v.How = true, "session ended"
			return v, nil
		case err != nil:
			return v, fmt.Errorf("verify pid %d on %s: %w", id.PID, t.Name, err)
		}
		v.State, v.WaitEventType, v.WaitEvent = State(state), wet, we
		// Aborted without a transaction start released its locks already;
		// with one (a savepoint was in use) the outer transaction holds them.
		v.AbortedTxOpen = v.State == StateIdleInTxAborted && inXact
		if action == Cancel && (qs == nil || !qs.Equal(id.QueryStart) || v.State != StateActive) {
			v.Ended, v.How = true, "query ended"
			return v, nil
		}
		if !time.Now().Add(wait).Before(deadline) {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// WhyStillRunning explains, from what PostgreSQL showed, why a signalled
// backend has not ended, and what to do next.
func WhyStillRunning(action Action, v Verification) string {
	switch {
	case v.AbortedTxOpen:
		return "The statement was cancelled but its transaction is still open (idle in transaction, aborted) and keeps its locks until the client rolls back. Terminate ends it."
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
