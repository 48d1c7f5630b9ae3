package pg

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Action is what a signal does to a backend.
type Action string

const (
	// Cancel ends the running statement (pg_cancel_backend, SIGINT); the
	// session survives. It does nothing to an idle session.
	Cancel Action = "cancel"
	// Terminate ends the whole session (pg_terminate_backend, SIGTERM) and
	// rolls back its transaction. The last resort.
	Terminate Action = "terminate"
)

// ParseAction reads "cancel" or "terminate".
func ParseAction(s string) (Action, error) {
	switch Action(s) {
	case Cancel, Terminate:
		return Action(s), nil
	}
	return "", fmt.Errorf("action must be cancel or terminate, not %q", s)
}

// Result is what a signal attempt came to.
type Result string

const (
	// Sent: the identity matched and PostgreSQL accepted the signal. It does
	// not mean the backend has ended yet: Verify says that.
	Sent Result = "sent"
	// Gone: no backend matches the identity any more (the query finished, the
	// pid now runs something else, or the session ended). Nothing was signalled.
	Gone Result = "gone"
	// ServerChanged: the server restarted or failed over since the listing;
	// pids no longer mean what they meant. Nothing was signalled.
	ServerChanged Result = "server-changed"
	// Denied: PostgreSQL refused the signal (SQLSTATE 42501).
	Denied Result = "denied"
)

// Outcome describes a signal attempt.
type Outcome struct {
	Action  Action
	Result  Result
	Message string // for Denied: PostgreSQL's own message and detail
	Fix     string // for Denied: what an administrator can do about it
}

// signalSQL signals only a backend that still has the approved identity, in
// one autocommit statement: the WHERE clause is checked against the snapshot
// this statement took, and the volatile function in the select list runs only
// for a row that passed it. 0 rows means nothing was signalled.
//
// Cancel also requires state = 'active': an idle session ignores SIGINT, and
// a session that went idle has finished the approved statement. Terminate
// spares a session that is plain idle: its statement is over and no
// transaction is open, so ending it would only hurt the application.
const signalSQL = `
SELECT CASE WHEN $5::text = 'cancel' THEN pg_cancel_backend(a.pid)
            ELSE pg_terminate_backend(a.pid) END
FROM pg_stat_activity a
WHERE a.pid = $1
  AND a.backend_start = $2
  AND a.query_start = $3
  AND pg_postmaster_start_time() = $4
  AND a.backend_type = 'client backend'
  AND a.pid <> pg_backend_pid()
  AND ($5::text <> 'cancel' OR a.state = 'active')
  AND a.state <> 'idle'`

// serverStartSQL tells a restart apart from a vanished backend after a
// mismatch; it is only read, never used to decide whether to signal.
const serverStartSQL = `SELECT pg_postmaster_start_time()`

// Signal sends action to the backend with identity id, if and only if it
// still has that identity. Four things can happen:
//   - Sent: the signal went to exactly that backend;
//   - Gone or ServerChanged: nothing was signalled;
//   - Denied: PostgreSQL refused, Outcome.Message says why and Fix how to fix it;
//   - an error (unreachable, timeout): the signal may not have been sent.
func (t *Target) Signal(ctx context.Context, action Action, id Identity) (Outcome, error) {
	out := Outcome{Action: action}
	if _, err := ParseAction(string(action)); err != nil {
		return out, err
	}
	var sent []bool
	err := t.do(ctx, func(ctx context.Context) error {
		sent = sent[:0]
		rows, err := t.pool.Query(ctx, signalSQL, id.PID, id.BackendStart, id.QueryStart, id.ServerStart, string(action))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ok *bool
			if err := rows.Scan(&ok); err != nil {
				return err
			}
			sent = append(sent, ok != nil && *ok)
		}
		return rows.Err()
	})
	var pgErr *Error
	switch {
	case errors.Is(err, ErrPermission) && errors.As(err, &pgErr):
		out.Result = Denied
		out.Message = pgErr.Message
		if pgErr.Detail != "" {
			out.Message += " " + pgErr.Detail
		}
		out.Fix = "GRANT pg_signal_backend TO <pgkill role> (on RDS/Aurora: rds_superuser also works); sessions of a superuser can only be signalled by a superuser"
		return out, nil
	case err != nil:
		return out, fmt.Errorf("%s pid %d on %s: %w", action, id.PID, t.Name, err)
	case len(sent) == 1 && sent[0]:
		out.Result = Sent
		return out, nil
	}
	// No row (or false: the backend left between the check and kill()).
	out.Result = Gone
	var started time.Time
	if err := t.do(ctx, func(ctx context.Context) error {
		return t.pool.QueryRow(ctx, serverStartSQL).Scan(&started)
	}); err == nil && !id.ServerStart.IsZero() && !started.Equal(id.ServerStart) {
		out.Result = ServerChanged
	}
	return out, nil
}
