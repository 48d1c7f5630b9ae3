package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// catalog is what the lifeline knows of roles and databases. The names and
// attributes live in shared catalogs (pg_authid, pg_database), whose reads
// take the lock table: they are read only when it is calm, and kept here,
// so that listing and signalling never read them.
type catalog struct {
	me    me
	roles map[uint32]role
	dbs   map[uint32]string
	at    time.Time
}

// me is pgkill's own role.
type me struct {
	oid           uint32
	user          string
	superuser     bool
	signalBackend bool // member of pg_signal_backend
}

// role is a role as pgkill's role sees it.
type role struct {
	name  string
	super bool
	// privs: pgkill's role has this role's privileges, so may signal its
	// sessions without pg_signal_backend.
	privs bool
}

// catalogSQL reads every role and database. pg_get_userbyid() looks each
// role up through the role cache of this session, which pg_cancel_backend
// and pg_terminate_backend consult (superuser_arg) for the session they
// signal: afterwards they find every role there, and the signal needs no
// catalog read. pg_has_role() likewise caches pgkill's own memberships
// (roles_is_member_of), which the signal checks too.
const catalogSQL = `
SELECT r.oid, r.rolname::text, r.rolsuper, pg_get_userbyid(r.oid) IS NOT NULL,
       pg_has_role(current_user, r.oid, 'USAGE'), r.rolname = current_user,
       pg_has_role(current_user, 'pg_signal_backend', 'USAGE')
FROM pg_roles r`

const databasesSQL = `SELECT oid, datname::text FROM pg_database`

// readCatalog reads roles and databases on c.
func readCatalog(ctx context.Context, c *pgx.Conn) (*catalog, error) {
	cat := &catalog{roles: map[uint32]role{}, dbs: map[uint32]string{}, at: time.Now()}
	var b pgx.Batch
	b.Queue(catalogSQL)
	b.Queue(databasesSQL)
	br := c.SendBatch(ctx, &b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	found := false
	for rows.Next() {
		var (
			oid              uint32
			r                role
			cached, self, sb bool
		)
		if err := rows.Scan(&oid, &r.name, &r.super, &cached, &r.privs, &self, &sb); err != nil {
			rows.Close()
			return nil, err
		}
		cat.roles[oid] = r
		if self {
			cat.me = me{oid: oid, user: r.name, superuser: r.super, signalBackend: sb}
			found = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("pgkill's own role is not in pg_roles")
	}
	rows, err = br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var name string
		if err := rows.Scan(&oid, &name); err != nil {
			return nil, err
		}
		cat.dbs[oid] = name
	}
	return cat, rows.Err()
}

// catalog is the latest catalog read (nil before the first connection).
func (t *Target) catalog() *catalog {
	t.catMu.Lock()
	defer t.catMu.Unlock()
	return t.cat
}

func (t *Target) setCatalog(c *catalog) {
	t.catMu.Lock()
	t.cat = c
	t.catMu.Unlock()
}

// warmLifeline runs on each new lifeline connection: it reads the catalog
// (the connection itself needed the lock table moments ago, so this is when
// reading it costs least) and starts the keeper once.
func (t *Target) warmLifeline(ctx context.Context, c *pgx.Conn) error {
	cat, err := readCatalog(ctx, c)
	if err != nil {
		return fmt.Errorf("read roles and databases: %w", err)
	}
	t.setCatalog(cat)
	if t.opts.Keepalive > 0 {
		t.keepOnce.Do(func() { go t.keep() })
	}
	return nil
}

// refreshCatalog reads the catalog again on the lifeline. Only call it
// right after a lifeline read showed no session waiting on a lock: a
// deadlock check, which is what holds the lock table in a pile-up, starts
// only after a session has waited deadlock_timeout (1s by default), and
// this read takes milliseconds.
func (t *Target) refreshCatalog(ctx context.Context) error {
	cat, err := onLifeline(ctx, t, "the read of roles and databases", reads, readCatalog)
	if err != nil {
		return err
	}
	t.setCatalog(cat)
	return nil
}

// lockWaitsSQL counts the sessions waiting on a heavyweight lock or on the
// lock manager (where deadlock checks queue), from the activity array
// only.
const lockWaitsSQL = `
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' OR (wait_event_type = 'LWLock' AND wait_event IN ('LockManager', 'lock_manager')))::int
FROM pg_stat_get_activity(NULL)`

// keep checks the lifeline every Keepalive until Close: it reconnects a
// lifeline that was lost (one attempt at a time, spaced), refreshes the
// catalog while the lock table is calm, and opens the lock-table
// connection then too, so that a pile-up finds both already open.
func (t *Target) keep() {
	defer close(t.kept)
	tick := time.NewTicker(t.opts.Keepalive)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.check()
		}
	}
}

func (t *Target) check() {
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.Keepalive)
	defer cancel()
	go func() { // Close ends the wait
		select {
		case <-t.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	waits, err := onLifeline(ctx, t, "the health check", reads, func(ctx context.Context, c *pgx.Conn) (int, error) {
		var n int
		return n, c.QueryRow(ctx, lockWaitsSQL).Scan(&n)
	})
	if err != nil || waits > 0 {
		return
	}
	if cat := t.catalog(); cat == nil || time.Since(cat.at) >= t.opts.Keepalive {
		if t.refreshCatalog(ctx) != nil {
			return
		}
	}
	if !t.locks.stuck(0) {
		_, _ = call(ctx, t.locks, "the health check", reads, func(ctx context.Context, c *pgx.Conn) (struct{}, error) {
			_, err := c.Exec(ctx, "SELECT 1")
			return struct{}{}, err
		})
	}
}
