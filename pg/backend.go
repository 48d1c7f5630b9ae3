package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Identity pins one statement execution on one server. A signal goes only to
// the backend that still matches all of it, checked in the statement that
// sends the signal.
type Identity struct {
	Target       string    `json:"target"`
	PID          int32     `json:"pid"`
	BackendStart time.Time `json:"backend_start"` // the process; a reused pid has a later one
	QueryStart   time.Time `json:"query_start"`   // the statement; changes with each new one
	ServerStart  time.Time `json:"server_start"`  // pg_postmaster_start_time(): changes on restart or failover
}

// State is pg_stat_activity.state.
type State string

const (
	StateActive            State = "active"
	StateIdleInTransaction State = "idle in transaction"
	StateIdleInTxAborted   State = "idle in transaction (aborted)"
	StateFastpath          State = "fastpath function call"
)

// Idle reports whether the session is waiting for its client inside a
// transaction: cancel does nothing there, only terminate helps.
func (s State) Idle() bool { return s == StateIdleInTransaction || s == StateIdleInTxAborted }

// Backend is one long-running session as pg_stat_activity showed it.
type Backend struct {
	Identity
	Workers        int           `json:"parallel_workers"` // parallel workers serving this backend
	Database       string        `json:"database"`
	User           string        `json:"user"`
	Application    string        `json:"application"`
	Client         string        `json:"client"` // client address, or "local" for a Unix socket
	BackendType    string        `json:"backend_type"`
	State          State         `json:"state"`
	WaitEventType  string        `json:"wait_event_type"`
	WaitEvent      string        `json:"wait_event"`
	XactStart      time.Time     `json:"xact_start"`
	StateChange    time.Time     `json:"state_change"`
	Query          string        `json:"query"`
	QueryTruncated bool          `json:"query_truncated"`       // cut by track_activity_query_size
	Fingerprint    string        `json:"fingerprint,omitempty"` // of the query text as read, for audit records (set by the bot)
	Duration       time.Duration `json:"-"`                     // of the query when active, of the transaction when idle in one
	BlockedBy      []int32       `json:"blocked_by"`            // pg_blocking_pids(); 0 is a prepared transaction
	Blocking       int           `json:"blocking"`              // sessions waiting directly on this one
	BlockingTotal  int           `json:"blocking_total"`        // sessions waiting on it directly or through others
	Superuser      bool          `json:"superuser"`             // the session's role is a superuser
	Protected      string        `json:"protected,omitempty"`   // why we must not or cannot signal it; "" when we may
}

// Signallable reports whether pgkill may offer Cancel or Terminate.
func (b Backend) Signallable() bool { return b.Protected == "" }

// RootBlocker reports whether this session blocks others while waiting on no
// lock itself: ending it frees the whole chain.
func (b Backend) RootBlocker() bool { return b.Blocking > 0 && len(b.BlockedBy) == 0 }

// BlockedByPreparedXact reports whether a prepared transaction (pid 0 in
// pg_blocking_pids) holds a lock this session waits for. No signal ends a
// prepared transaction: only COMMIT or ROLLBACK PREPARED does.
func (b Backend) BlockedByPreparedXact() bool {
	for _, p := range b.BlockedBy {
		if p == 0 {
			return true
		}
	}
	return false
}

// Filter narrows a listing. Empty fields match everything.
type Filter struct {
	MinDuration time.Duration
	Database    string
	User        string
	Application string
	State       string // "active", "idle-in-transaction" or "" / "all"
	PID         int32  // one pid, whatever its duration
}

// States accepted by Filter.State.
var FilterStates = []string{"active", "idle-in-transaction", "all"}

// ParseFilterState checks a user-supplied state filter.
func ParseFilterState(s string) (string, error) {
	switch s {
	case "", "all":
		return "all", nil
	case "active", "idle-in-transaction":
		return s, nil
	case "idle", "idle_in_transaction", "idle in transaction":
		return "idle-in-transaction", nil
	}
	return "", fmt.Errorf("state must be active, idle-in-transaction or all, not %q", s)
}

// listSQL reads pg_stat_activity once (MATERIALIZED, one snapshot) and
// derives everything from that copy. It runs as its own autocommit statement:
// inside a transaction pg_stat_activity would be a stale snapshot.
//
//   - pg_blocking_pids() takes the lock manager's shared state, so it is called
//     only for sessions waiting on a heavyweight lock.
//   - leader_pid (13+) is read through to_jsonb so the statement also runs on 12.
//   - our own sessions are excluded by pid and by application_name+role, so the
//     other connection of our pool never shows either.
//   - ages are computed with clock_timestamp() on the server: no clock skew.
const listSQL = `
WITH RECURSIVE act AS MATERIALIZED (
  SELECT a.*,
         (to_jsonb(a) ->> 'leader_pid')::int AS leader,
         CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) ELSE '{}'::int[] END AS blocked_by
  FROM pg_stat_activity a
),
edges AS (
  SELECT DISTINCT w.pid AS waiter, b.blocker
  FROM act w CROSS JOIN LATERAL unnest(w.blocked_by) AS b(blocker)
),
reach(blocker, waiter) AS (
  SELECT blocker, waiter FROM edges
  UNION
  SELECT r.blocker, e.waiter FROM reach r JOIN edges e ON e.blocker = r.waiter
),
me AS (
  SELECT r.rolsuper,
         pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS signal_backend
  FROM pg_roles r WHERE r.rolname = current_user
),
rows AS (
  SELECT a.*,
         CASE WHEN a.state = 'active' THEN a.query_start ELSE coalesce(a.xact_start, a.state_change) END AS since
  FROM act a
  WHERE a.pid <> pg_backend_pid()
    AND NOT (a.application_name = $7 AND a.usename = current_user)
    AND a.backend_type IN ('client backend', 'autovacuum worker')
    AND a.leader IS NULL
    AND a.backend_start IS NOT NULL
    AND ($6::int IS NULL OR a.pid = $6)
    AND ($2::text IS NULL OR a.datname = $2)
    AND ($3::text IS NULL OR a.usename = $3)
    AND ($4::text IS NULL OR a.application_name = $4)
    AND CASE $5::text
          WHEN 'active' THEN a.state = 'active'
          WHEN 'idle-in-transaction' THEN a.state IN ('idle in transaction', 'idle in transaction (aborted)')
          ELSE a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)', 'fastpath function call')
               OR $6::int IS NOT NULL
        END
)
SELECT a.pid, a.backend_start, coalesce(a.query_start, a.backend_start), pg_postmaster_start_time(),
       coalesce((SELECT count(*) FROM act w WHERE w.leader = a.pid), 0)::int,
       coalesce(a.datname, ''), coalesce(a.usename, ''), coalesce(a.application_name, ''),
       CASE WHEN a.client_addr IS NULL THEN CASE WHEN a.client_port = -1 THEN 'local' ELSE '' END
            ELSE host(a.client_addr) END,
       a.backend_type, coalesce(a.state, ''),
       coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''),
       a.xact_start, a.state_change,
       coalesce(a.query, ''),
       octet_length(a.query) >= (SELECT s.setting::int FROM pg_settings s WHERE s.name = 'track_activity_query_size') - 1,
       extract(epoch FROM clock_timestamp() - a.since)::float8,
       a.blocked_by,
       (SELECT count(*) FROM edges e WHERE e.blocker = a.pid)::int,
       (SELECT count(DISTINCT r.waiter) FROM reach r WHERE r.blocker = a.pid)::int,
       coalesce(r.rolsuper, a.usesysid IS NULL),
       CASE WHEN a.usesysid IS NULL OR r.rolsuper THEN me.rolsuper
            ELSE me.rolsuper OR me.signal_backend OR pg_has_role(current_user, a.usesysid, 'USAGE')
       END
FROM rows a
LEFT JOIN pg_roles r ON r.oid = a.usesysid
CROSS JOIN me
WHERE a.since IS NOT NULL
  AND (a.since <= clock_timestamp() - make_interval(secs => $1::float8) OR $6::int IS NOT NULL)
ORDER BY a.since, a.pid`

// List returns the sessions matching f, longest first. Sessions pgkill must
// not or cannot signal are included with Protected saying why.
func (t *Target) List(ctx context.Context, f Filter) ([]Backend, error) {
	state, err := ParseFilterState(f.State)
	if err != nil {
		return nil, err
	}
	var out []Backend
	err = t.do(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := t.pool.Query(ctx, listSQL,
			f.MinDuration.Seconds(), nullable(f.Database), nullable(f.User), nullable(f.Application),
			state, nullablePID(f.PID), AppName)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			b, err := t.scanBackend(rows)
			if err != nil {
				return err
			}
			out = append(out, b)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t.Name, err)
	}
	return out, nil
}

// Backend returns the current state of pid, whatever its duration.
func (t *Target) Backend(ctx context.Context, pid int32) (Backend, error) {
	bs, err := t.List(ctx, Filter{PID: pid})
	if err != nil {
		return Backend{}, err
	}
	if len(bs) == 0 {
		return Backend{}, fmt.Errorf("pid %d on %s: %w", pid, t.Name, ErrNotFound)
	}
	return bs[0], nil
}

func (t *Target) scanBackend(rows pgx.Rows) (Backend, error) {
	var (
		b         Backend
		xact      *time.Time
		change    *time.Time
		secs      float64
		canSignal bool
		state     string
	)
	err := rows.Scan(&b.PID, &b.BackendStart, &b.QueryStart, &b.ServerStart, &b.Workers,
		&b.Database, &b.User, &b.Application, &b.Client, &b.BackendType, &state,
		&b.WaitEventType, &b.WaitEvent, &xact, &change, &b.Query, &b.QueryTruncated, &secs,
		&b.BlockedBy, &b.Blocking, &b.BlockingTotal, &b.Superuser, &canSignal)
	if err != nil {
		return b, err
	}
	b.Target = t.Name
	b.State = State(state)
	if xact != nil {
		b.XactStart = *xact
	}
	if change != nil {
		b.StateChange = *change
	}
	b.Duration = time.Duration(secs * float64(time.Second)).Round(time.Millisecond)
	b.Protected = t.protection(b, canSignal)
	return b, nil
}

// protection says why a backend is not offered, or "" when it is. The rule
// is checked here, on the listing that every request and signal starts
// from; the signal's identity check (query_start) then guarantees the
// session has not run another statement (such as SET application_name)
// since.
func (t *Target) protection(b Backend, canSignal bool) string {
	if b.BackendType != "client backend" {
		return "not a client backend (" + b.BackendType + ")"
	}
	if r, ok := t.opts.Protect.Match(b.User, b.Application); ok {
		return "protected (" + r.String() + ")"
	}
	switch {
	case b.Superuser && !canSignal:
		return "superuser session: only a superuser can signal it"
	case !canSignal:
		return "no permission: GRANT pg_signal_backend to pgkill's role"
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullablePID(pid int32) *int32 {
	if pid == 0 {
		return nil
	}
	return &pid
}
