package pg

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// treeBudget bounds the blocking tree: reading the lock waits (server side)
// and computing the counts (here) each get this long. Past it the sessions
// are listed without blocking counts and Listing.NoTree says so: a pile-up
// must never make the target unreadable during the incident it causes.
const treeBudget = time.Second

// meSQL reads, once per listing, who we are and what we may do.
const meSQL = `
SELECT current_user::text, r.rolsuper, pg_has_role(current_user, 'pg_signal_backend', 'USAGE'),
       pg_postmaster_start_time()
FROM pg_roles r WHERE r.rolname = current_user`

// sessionsSQL reads pg_stat_activity once, with no self-join and no
// correlated subquery, so it costs about what a plain read of the view
// does. Each row is one of three kinds:
//
//	0 a session that may be listed (filtered here by state, duration and
//	  pid; the name patterns are matched in Go);
//	1 a session of another role that pgkill's role may not see: its
//	  timestamps and query are NULL (<insufficient privilege>), only its
//	  pid, database, user and application are shown, so it is counted,
//	  never listed;
//	2 a parallel worker, only to count it under its leader and to map its
//	  lock waits onto the leader.
//
// Only $4 characters of the query leave the server ($4 <= 0: all of it);
// whether that cut it is told by lengths in bytes, so a 64 kB text is never
// scanned character by character.
// Ages are computed with clock_timestamp() on the server: no clock skew.
// Our own sessions are excluded by pid and by application_name+role, so the
// other connection of our pool never shows either. leader_pid exists from
// 13 on; for 12 sessionsSQL12 reads NULL instead.
const sessionsSQL = `
SELECT CASE WHEN a.backend_start IS NULL THEN 1 WHEN a.leader_pid IS NOT NULL AND a.leader_pid <> a.pid THEN 2 ELSE 0 END,
       a.pid, a.leader_pid, a.backend_start, coalesce(a.query_start, a.backend_start),
       coalesce(a.datname, ''), coalesce(a.usename, ''), coalesce(a.application_name, ''),
       CASE WHEN a.client_addr IS NULL THEN CASE WHEN a.client_port = -1 THEN 'local' ELSE '' END
            ELSE host(a.client_addr) END,
       coalesce(a.backend_type, ''), coalesce(a.state, ''),
       coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''),
       a.xact_start, a.state_change,
       CASE WHEN $4::int > 0 THEN left(a.query, $4::int) ELSE coalesce(a.query, '') END,
       coalesce(octet_length(a.query) >= (SELECT pg_size_bytes(current_setting('track_activity_query_size'))) - 1
                OR ($4::int > 0 AND octet_length(left(a.query, $4::int)) < octet_length(a.query)), false),
       coalesce(extract(epoch FROM clock_timestamp() - s.since)::float8, 0),
       coalesce(r.rolsuper, a.usesysid IS NULL),
       a.usesysid IS NOT NULL AND pg_has_role(current_user, a.usesysid, 'USAGE')
FROM pg_stat_activity a
LEFT JOIN pg_roles r ON r.oid = a.usesysid
CROSS JOIN LATERAL (
  SELECT CASE WHEN a.state = 'active' THEN a.query_start ELSE coalesce(a.xact_start, a.state_change) END AS since
) s
WHERE a.pid <> pg_backend_pid()
  AND NOT (a.application_name = $3 AND a.usename = current_user)
  AND (   (a.backend_start IS NULL AND a.usesysid IS NOT NULL AND ($2::int IS NULL OR a.pid = $2))
       OR (a.leader_pid IS NOT NULL AND a.leader_pid <> a.pid)
       OR (    a.backend_type IN ('client backend', 'autovacuum worker')
           AND a.leader_pid IS NULL
           AND ($2::int IS NULL OR a.pid = $2)
           AND s.since IS NOT NULL
           AND (s.since <= clock_timestamp() - make_interval(secs => $1::float8) OR $2::int IS NOT NULL)
           AND CASE $5::text
                 WHEN 'active' THEN a.state = 'active'
                 WHEN 'idle-in-transaction' THEN a.state IN ('idle in transaction', 'idle in transaction (aborted)')
                 ELSE a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)', 'fastpath function call')
                      OR $2::int IS NOT NULL
               END))
ORDER BY s.since, a.pid`

// sessionsSQL12 is sessionsSQL for PostgreSQL 12, which has no leader_pid
// (its parallel workers are not client backends, so they are never listed,
// only not counted).
var sessionsSQL12 = strings.ReplaceAll(sessionsSQL, "a.leader_pid", "NULL::int")

// me is what meSQL reads.
type me struct {
	user          string
	superuser     bool
	signalBackend bool
	serverStart   time.Time
}

// List returns the sessions matching f, longest first, with the blocking
// tree and the count of sessions pgkill's role cannot see. Sessions pgkill
// must not or cannot signal are included with Protected saying why. The
// reads are one round trip, in one transaction: one pg_stat_activity
// snapshot. Listing.Err is left for Fleet to fill; an error is returned.
func (t *Target) List(ctx context.Context, f Filter) (Listing, error) {
	l := Listing{Target: t.Name}
	state, err := f.check()
	if err != nil {
		return l, err
	}
	err = t.do(ctx, func(ctx context.Context) error {
		l = Listing{Target: t.Name}
		return t.list(ctx, f, state, &l)
	})
	if err != nil {
		return Listing{Target: t.Name}, fmt.Errorf("list %s: %w", t.Name, err)
	}
	return l, nil
}

func (t *Target) list(ctx context.Context, f Filter, state string, l *Listing) error {
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	sessions := sessionsSQL
	if serverMajor(conn.Conn()) < 13 {
		sessions = sessionsSQL12
	}
	fromLocks := serverMajor(conn.Conn()) >= 14 && !t.blockingPIDs
	var batch pgx.Batch
	batch.Queue(meSQL)
	batch.Queue(sessions, f.MinDuration.Seconds(), nullablePID(f.PID), AppName, f.QueryMax, state)
	if fromLocks {
		batch.Queue(locksSQL)
	} else {
		batch.Queue(blockingPIDsSQL, treeBudget.Seconds())
	}
	var m me
	br := conn.SendBatch(ctx, &batch)
	defer br.Close()
	if err := br.QueryRow().Scan(&m.user, &m.superuser, &m.signalBackend, &m.serverStart); err != nil {
		return err
	}
	leader := map[int32]int32{}
	workers := map[int32]int{}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	for rows.Next() {
		b, kind, lead, err := t.scanSession(rows, m)
		if err != nil {
			rows.Close()
			return err
		}
		switch {
		case kind == 2 && lead != nil:
			leader[b.PID] = *lead
			workers[*lead]++
		case !f.matches(b.Database, b.User, b.Application):
		case kind == 1:
			l.Hidden++
			l.hiddenRole = b.User
		default:
			l.Backends = append(l.Backends, b)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	l.role = m.user
	var (
		edges    map[int32][]int32
		complete = true
	)
	if fromLocks {
		edges, err = readLocks(br, leader)
	} else {
		edges, complete, err = readBlockingPIDs(br)
	}
	if err != nil {
		return err
	}
	for i := range l.Backends {
		l.Backends[i].Workers = workers[l.Backends[i].PID]
	}
	if !complete {
		l.NoTree = fmt.Sprintf("the blocking tree was not computed: reading the lock waits of %d sessions took over %s", len(edges), treeBudget)
		return nil
	}
	tr, err := buildTree(edges, leader, treeBudget)
	if err != nil {
		l.NoTree = fmt.Sprintf("the blocking tree was not computed: %d sessions wait on locks and counting them took over %s", len(edges), treeBudget)
		return nil
	}
	for i := range l.Backends {
		b := &l.Backends[i]
		b.BlockedBy = tr.blockedBy[b.PID]
		b.Blocking = tr.direct[b.PID]
		b.BlockingTotal = tr.total[b.PID]
	}
	return nil
}

// serverMajor is the server's major version from the server_version the
// server reported when the connection started (no round trip).
func serverMajor(conn *pgx.Conn) int {
	v := conn.PgConn().ParameterStatus("server_version")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	n, _ := strconv.Atoi(v)
	return n
}

func (t *Target) scanSession(rows pgx.Rows, m me) (b Backend, kind int, lead *int32, err error) {
	var (
		start, qs, xact, change *time.Time
		secs                    float64
		memberOf                bool
		state                   string
	)
	err = rows.Scan(&kind, &b.PID, &lead, &start, &qs, &b.Database, &b.User, &b.Application,
		&b.Client, &b.BackendType, &state, &b.WaitEventType, &b.WaitEvent, &xact, &change, &b.Query,
		&b.QueryTruncated, &secs, &b.Superuser, &memberOf)
	if err != nil || kind != 0 {
		return b, kind, lead, err
	}
	b.Target = t.Name
	b.ServerStart = m.serverStart
	b.BackendStart, b.QueryStart = *start, *qs
	b.State = State(state)
	if xact != nil {
		b.XactStart = *xact
	}
	if change != nil {
		b.StateChange = *change
	}
	b.Duration = time.Duration(secs * float64(time.Second)).Round(time.Millisecond)
	b.Protected = t.protection(b, canSignal(m, b.Superuser, memberOf))
	return b, kind, lead, nil
}

// canSignal is PostgreSQL's own rule (signalfuncs.c): a superuser's (or
// role-less) session only by a superuser; any other by a superuser, a member
// of pg_signal_backend, or a role with the session role's privileges.
func canSignal(m me, targetSuper, memberOf bool) bool {
	if targetSuper {
		return m.superuser
	}
	return m.superuser || m.signalBackend || memberOf
}

// Backend returns the current state of pid, whatever its duration, with its
// whole query text. A session pgkill's role may not see is an error
// wrapping ErrHidden that names the GRANT; no session at all, ErrNotFound.
func (t *Target) Backend(ctx context.Context, pid int32) (Backend, error) {
	l, err := t.List(ctx, Filter{PID: pid})
	if err != nil {
		return Backend{}, err
	}
	if len(l.Backends) > 0 {
		return l.Backends[0], nil
	}
	if l.Hidden > 0 {
		return Backend{}, fmt.Errorf("pid %d on %s belongs to role %q, whose sessions pgkill's role %q cannot see, so it cannot be identified or signalled (GRANT pg_read_all_stats TO %s): %w",
			pid, t.Name, l.hiddenRole, l.role, l.role, ErrHidden)
	}
	return Backend{}, fmt.Errorf("pid %d on %s: %w", pid, t.Name, ErrNotFound)
}

func nullablePID(pid int32) *int32 {
	if pid == 0 {
		return nil
	}
	return &pid
}
