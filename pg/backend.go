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
	QueryTruncated bool          `json:"query_truncated"`     // cut by track_activity_query_size or by Filter.QueryMax
	Duration       time.Duration `json:"-"`                   // of the query when active, of the transaction when idle in one
	BlockedBy      []int32       `json:"blocked_by"`          // pg_blocking_pids(); 0 is a prepared transaction
	Blocking       int           `json:"blocking"`            // sessions waiting directly on this one
	BlockingTotal  int           `json:"blocking_total"`      // sessions waiting on it directly or through others
	Superuser      bool          `json:"superuser"`           // the session's role is a superuser
	Protected      string        `json:"protected,omitempty"` // why we must not or cannot signal it; "" when we may
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
