package pg

import (
	"time"
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
	QueryTruncated bool          `json:"query_truncated"`       // cut by track_activity_query_size or by Filter.QueryMax
	Fingerprint    string        `json:"fingerprint,omitempty"` // of the query text as read, for audit records (set by the bot)
	Duration       time.Duration `json:"-"`                     // of the query when active, of the transaction when idle in one
	XactAge        time.Duration `json:"-"`                     // how long its transaction has been open; 0 outside one
	// BlockedBy lists the sessions it waits for directly: those
	// pg_blocking_pids() names, less those it waits for only through
	// another of them (in a queue on one row, the session ahead; not every
	// session ahead). 0 is a prepared transaction.
	BlockedBy     []int32 `json:"blocked_by"`
	Blocking      int     `json:"blocking"`       // sessions whose BlockedBy names this one
	BlockingTotal int     `json:"blocking_total"` // sessions waiting on it directly or through others
	// WaitsFor is the lock it waits for, when it waits for one held or
	// queued for by another session.
	WaitsFor *Lock `json:"waits_for,omitempty"`
	// Queue is what the sessions waiting directly on this one wait for,
	// one entry per lock, most sessions first.
	Queue []LockQueue `json:"queue,omitempty"`
	// LikelyRoot: in a listing without the tree (Listing.Degraded or
	// NoTree) while sessions wait on locks, this is the session a rule
	// that needs no lock table takes for the root blocker (likelyRoot). A
	// guess, never a proof.
	LikelyRoot bool   `json:"likely_root,omitempty"`
	Superuser  bool   `json:"superuser"`           // the session's role is a superuser
	Protected  string `json:"protected,omitempty"` // why we must not or cannot signal it; "" when we may
}

// Lock is a lock a session waits for, as pg_locks shows it.
type Lock struct {
	Type string `json:"type"` // pg_locks.locktype: relation, tuple, transactionid, advisory…
	Mode string `json:"mode"` // AccessExclusiveLock, ShareLock…
	// Relation names the relation, schema-qualified unless on the search
	// path ("" when the lock is on none). For a wait on a transaction ID
	// (a row another transaction changed or locked) it is the relation of
	// that row.
	Relation string `json:"relation,omitempty"`
	// RelationOID and Database are set instead of Relation for a relation
	// of another database than the one pgkill connects to: there its OID
	// cannot be named.
	RelationOID uint32 `json:"relation_oid,omitempty"`
	Database    string `json:"database,omitempty"`
}

// LockQueue is a number of sessions waiting for one lock.
type LockQueue struct {
	Lock
	Sessions int `json:"sessions"`
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

// protection says why a backend is not offered, or "" when it is. The
// signalling statement checks the rules again (signalSetSQL): a statement
// can change its own application_name while it runs.
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
