package pg

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// activitySQL reads every backend from pg_stat_get_activity(NULL), the
// function behind pg_stat_activity, without the view's joins with the
// shared catalogs pg_database and pg_authid: taking a shared catalog's lock
// goes through the lock table, which a lock pile-up's deadlock checks hold
// for as long as the pile-up lasts, while this read only copies the
// backends' status from shared memory. Role and database names come from
// the catalog pgkill read when the lock table was calm.
//
// Every backend is read (the likely root blocker and the count of lock
// waits need them all); only those the filter lists ($1 duration, $2 pid,
// $5 state) carry their query, of which only $4 characters leave the server
// ($4 <= 0: all of it); whether that cut it is told by lengths in bytes, so
// a 64 kB text is never scanned character by character. Ages are computed
// with clock_timestamp() on the server: no clock skew. pgkill's own
// sessions are left out by pid, and by application_name ($3) and role
// ($6), so its other connection never shows either. leader_pid exists from
// 13 on; for 12 activitySQL12 reads NULL instead.
const activitySQL = `
SELECT a.pid, a.leader_pid, coalesce(a.usesysid, 0), coalesce(a.datid, 0),
       a.backend_start, coalesce(a.query_start, a.backend_start), a.xact_start, a.state_change,
       coalesce(a.application_name, ''),
       CASE WHEN a.client_addr IS NULL THEN CASE WHEN a.client_port = -1 THEN 'local' ELSE '' END
            ELSE host(a.client_addr) END,
       coalesce(a.backend_type, ''), coalesce(a.state, ''),
       coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''), a.backend_xid IS NOT NULL,
       coalesce(extract(epoch FROM clock_timestamp() - s.since)::float8, 0),
       coalesce(extract(epoch FROM clock_timestamp() - a.xact_start)::float8, 0),
       p.listed,
       CASE WHEN p.listed THEN CASE WHEN $4::int > 0 THEN left(a.query, $4::int) ELSE coalesce(a.query, '') END END,
       p.listed AND coalesce(octet_length(a.query) >= pg_size_bytes(current_setting('track_activity_query_size')) - 1
                             OR ($4::int > 0 AND octet_length(left(a.query, $4::int)) < octet_length(a.query)), false),
       pg_postmaster_start_time()
FROM pg_stat_get_activity(NULL) a
CROSS JOIN LATERAL (
  SELECT CASE WHEN a.state = 'active' THEN a.query_start ELSE coalesce(a.xact_start, a.state_change) END AS since
) s
CROSS JOIN LATERAL (
  SELECT a.backend_start IS NOT NULL
     AND a.backend_type IN ('client backend', 'autovacuum worker')
     AND (a.leader_pid IS NULL OR a.leader_pid = a.pid)
     AND ($2::int IS NULL OR a.pid = $2)
     AND s.since IS NOT NULL
     AND (s.since <= clock_timestamp() - make_interval(secs => $1::float8) OR $2::int IS NOT NULL)
     AND CASE $5::text
           WHEN 'active' THEN a.state = 'active'
           WHEN 'idle-in-transaction' THEN a.state IN ('idle in transaction', 'idle in transaction (aborted)')
           ELSE a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)', 'fastpath function call')
                OR $2::int IS NOT NULL
         END AS listed
) p
WHERE a.pid <> pg_backend_pid()
  AND NOT (a.application_name = $3 AND a.usesysid = $6::oid)`

// activitySQL12 is activitySQL for PostgreSQL 12, which has no leader_pid
// (its parallel workers are not client backends, so they are never listed,
// only not counted).
var activitySQL12 = strings.ReplaceAll(activitySQL, "a.leader_pid", "NULL::int")

// session is one backend as activitySQL read it.
type session struct {
	Backend
	leader      *int32
	userID      uint32
	dbID        uint32
	xid         bool // holds a transaction ID: it has written, or locked rows
	listed      bool // passes the filter's duration, pid and state
	noIdentity  bool // another role's session pgkill's role cannot see
	xactSeconds float64
}

// activity is one read of every backend.
type activity struct {
	sessions    []session
	serverStart time.Time
	major       int // the server's major version
}

// lockWait reports whether s waits on a heavyweight lock, or on the lock
// manager itself, which is where a waiter's deadlock check queues.
func (s *session) lockWait() bool {
	return s.WaitEventType == "Lock" || (s.WaitEventType == "LWLock" && (s.WaitEvent == "LockManager" || s.WaitEvent == "lock_manager"))
}

// lockWaits counts the sessions waiting on a lock, and those of them queued
// on the lock manager.
func (a *activity) lockWaits() (waits, manager int) {
	for i := range a.sessions {
		s := &a.sessions[i]
		if s.lockWait() {
			waits++
			if s.WaitEventType == "LWLock" {
				manager++
			}
		}
	}
	return waits, manager
}

// readActivity runs activitySQL on c for filter f (state already checked);
// ourRole is pgkill's role (its other connection is left out).
func readActivity(ctx context.Context, c *pgx.Conn, f Filter, state string, ourRole uint32) (activity, error) {
	a := activity{major: serverMajor(c)}
	sql := activitySQL
	if a.major < 13 {
		sql = activitySQL12
	}
	rows, err := c.Query(ctx, sql, f.MinDuration.Seconds(), nullablePID(f.PID), AppName, f.QueryMax, state, ourRole)
	if err != nil {
		return a, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s                       session
			start, qs, xact, change *time.Time
			secs                    float64
			query                   *string
			st                      string
		)
		err := rows.Scan(&s.PID, &s.leader, &s.userID, &s.dbID, &start, &qs, &xact, &change, &s.Application,
			&s.Client, &s.BackendType, &st, &s.WaitEventType, &s.WaitEvent, &s.xid, &secs, &s.xactSeconds,
			&s.listed, &query, &s.QueryTruncated, &a.serverStart)
		if err != nil {
			return a, err
		}
		s.State = State(st)
		s.noIdentity = start == nil
		if start != nil {
			s.BackendStart = *start
		}
		if qs != nil {
			s.QueryStart = *qs
		}
		if xact != nil {
			s.XactStart = *xact
		}
		if change != nil {
			s.StateChange = *change
		}
		if query != nil {
			s.Query = *query
		}
		s.Duration = time.Duration(secs * float64(time.Second)).Round(time.Millisecond)
		if xact != nil {
			s.XactAge = time.Duration(s.xactSeconds * float64(time.Second)).Round(time.Millisecond)
		}
		a.sessions = append(a.sessions, s)
	}
	return a, rows.Err()
}
