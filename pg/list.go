package pg

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// treeBudget bounds the blocking tree: a listing waits this long for the
// lock-table read and gives computing the counts as long again. Past it the
// sessions are listed without the tree (Listing.Degraded or NoTree says
// why): a pile-up must never make the target unreadable during the
// incident it causes.
const treeBudget = time.Second

// busyBudget replaces treeBudget when at least busyQueue sessions queue on
// the lock manager (their deadlock checks, or a pile-up joining its queue):
// the lock table is then busy, and a first answer that comes quickly is
// worth more than one that waits. A session or two are there for a moment
// whenever a lock wait passes deadlock_timeout.
const (
	busyBudget = 200 * time.Millisecond
	busyQueue  = 10
)

// budget is treeBudget, or the test's own.
func (t *Target) budget() time.Duration {
	if t.treeBudget != 0 {
		return t.treeBudget
	}
	return treeBudget
}

// List returns the sessions matching f, longest first, with the blocking
// tree and the count of sessions pgkill's role cannot see. Sessions pgkill
// must not or cannot signal are included with Protected saying why.
// Listing.Err is left for Fleet to fill; an error is returned.
//
// The sessions are read on the lifeline, without the lock table; the tree
// comes from a read of pg_locks on the other connection, awaited for the
// tree budget. Four things can happen:
//   - the tree arrives in time: a complete listing;
//   - no session waits on a lock: a complete listing without a read of
//     pg_locks;
//   - the lock table does not answer in time (a lock pile-up's deadlock
//     checks hold it): Degraded is set, NoTree says how many sessions wait
//     on locks, and the likely root blocker is marked (Backend.LikelyRoot)
//     by a rule that needs no lock table. Complete waits for the tree;
//   - the lock-table read fails: NoTree says why, the likely root is marked.
//
// An error means the sessions could not be read at all.
func (t *Target) List(ctx context.Context, f Filter) (Listing, error) {
	state, err := f.check()
	if err != nil {
		return Listing{Target: t.Name}, err
	}
	l, err := t.list(ctx, f, state)
	if err != nil {
		return Listing{Target: t.Name}, fmt.Errorf("list %s: %w", t.Name, err)
	}
	return l, nil
}

// Complete returns l with its blocking tree. For a listing that is not
// Degraded that is l itself. Otherwise it waits (until ctx ends) for the
// lock-table read that l gave up on, then lists again with l's filter:
// the answer is complete, or Degraded again when the lock table is busy
// once more (call Complete again). An error means ctx ended first or the
// target could not be read; l is then still what the caller has.
func (t *Target) Complete(ctx context.Context, l Listing) (Listing, error) {
	if l.pending == nil {
		return l, nil
	}
	if _, err := l.pending.wait(ctx, t.locks); err != nil && !l.pending.ready() {
		return l, fmt.Errorf("list %s: the blocking tree: %w", t.Name, err)
	}
	return t.List(ctx, l.filter)
}

func (t *Target) list(ctx context.Context, f Filter, state string) (Listing, error) {
	act, err := t.activity(ctx, f, state)
	if err != nil {
		return Listing{}, err
	}
	l, leader := t.listing(act, f)
	waits, manager := act.lockWaits()
	l.LockWaits = waits
	if waits == 0 {
		return l, nil // nobody waits: no tree to read
	}
	budget := t.budget()
	if manager >= busyQueue {
		budget = min(budget, busyBudget)
	}
	tr := t.lockTable()
	if wait := budget - time.Since(tr.started); wait > 0 { // a read under way has used some
		wctx, cancel := context.WithTimeout(ctx, wait)
		_, _ = tr.wait(wctx, t.locks)
		cancel()
	}
	switch {
	case !tr.ready():
		l.Degraded = true
		l.NoTree = fmt.Sprintf("the lock table is busy: %d sessions are waiting on locks (PostgreSQL's deadlock checks); the blocking tree follows when it answers", waits)
		l.pending, l.filter = tr, f
		markLikelyRoot(&l, act)
	case tr.err != nil:
		l.NoTree = "the blocking tree could not be read: " + translate(tr.err).Error()
		markLikelyRoot(&l, act)
	default:
		t.addTree(&l, tr.val, leader, budget)
		if l.NoTree != "" {
			markLikelyRoot(&l, act)
		}
	}
	return l, nil
}

// activity reads every backend on the lifeline. When it finds a role or
// database the catalog does not know and no session waits on a lock, it
// reads the catalog again first (refreshCatalog says why that is safe).
func (t *Target) activity(ctx context.Context, f Filter, state string) (activity, error) {
	read := func(ctx context.Context, c *pgx.Conn) (activity, error) {
		return readActivity(ctx, c, f, state, t.catalog().me.oid)
	}
	act, err := onLifeline(ctx, t, "the read of pg_stat_get_activity", reads, read)
	if err != nil {
		return act, err
	}
	if waits, _ := act.lockWaits(); waits == 0 && t.catalog().unknown(act) {
		if err := t.refreshCatalog(ctx); err != nil {
			return act, err
		}
	}
	return act, nil
}

// unknown reports whether a of the backends' roles or databases is not in
// the catalog.
func (c *catalog) unknown(a activity) bool {
	for i := range a.sessions {
		s := &a.sessions[i]
		if _, ok := c.roles[s.userID]; s.userID != 0 && !ok {
			return true
		}
		if _, ok := c.dbs[s.dbID]; s.dbID != 0 && !ok {
			return true
		}
	}
	return false
}

// lockTable returns the lock-table read under way, or starts one: however
// many listings ask at once, one read at a time runs, and one that the
// lock table holds is joined, never repeated.
func (t *Target) lockTable() *future[lockRead] {
	t.treeMu.Lock()
	defer t.treeMu.Unlock()
	if t.tree != nil && !t.tree.ready() {
		return t.tree
	}
	t.tree = submit(context.Background(), t.locks, "a read of pg_locks", reads, t.readLockTable)
	return t.tree
}

// readLockTable reads the lock waits on c: from pg_locks alone on 14 and
// later, with pg_blocking_pids() before (no waitstart to order a queue).
func (t *Target) readLockTable(ctx context.Context, c *pgx.Conn) (lockRead, error) {
	major := serverMajor(c)
	sql := locksSQL
	if major < 14 {
		sql = locksSQL13
	}
	if major >= 14 && !t.blockingPIDs {
		rows, err := c.Query(ctx, sql)
		if err != nil {
			return lockRead{}, err
		}
		locks, err := readLocks(rows)
		return lockRead{rows: locks, complete: true}, err
	}
	var b pgx.Batch
	b.Queue(sql)
	b.Queue(blockingPIDsSQL, t.budget().Seconds())
	br := c.SendBatch(ctx, &b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return lockRead{}, err
	}
	lr := lockRead{}
	if lr.rows, err = readLocks(rows); err != nil {
		return lr, err
	}
	if rows, err = br.Query(); err != nil {
		return lr, err
	}
	lr.pids, lr.complete, err = readBlockingPIDs(rows)
	return lr, err
}

// listing turns one activity read into the listing for f (without the
// tree), and returns each parallel worker's leader.
func (t *Target) listing(a activity, f Filter) (Listing, map[int32]int32) {
	l := Listing{Target: t.Name}
	cat := t.catalog()
	l.role = cat.me.user
	leader := map[int32]int32{}
	workers := map[int32]int{}
	for i := range a.sessions {
		s := &a.sessions[i]
		if s.leader != nil && *s.leader != s.PID {
			leader[s.PID] = *s.leader
			workers[*s.leader]++
		}
	}
	for i := range a.sessions {
		s := &a.sessions[i]
		b := s.Backend
		b.User, b.Database = cat.roleName(s.userID), cat.dbName(s.dbID)
		switch {
		case s.noIdentity:
			if s.userID == 0 || (f.PID != 0 && s.PID != f.PID) || !f.matches(b.Database, b.User, b.Application) {
				continue
			}
			l.Hidden++
			l.hiddenRole = b.User
		case !s.listed || !f.matches(b.Database, b.User, b.Application):
		default:
			b.Target = t.Name
			b.ServerStart = a.serverStart
			b.Workers = workers[b.PID]
			r, known := cat.roles[s.userID]
			b.Superuser = s.userID == 0 || r.super
			b.Protected = t.protection(b, canSignal(cat.me, b.Superuser, r.privs))
			if !known && s.userID != 0 {
				b.Protected = fmt.Sprintf("its role (oid %d) is not known to pgkill yet: it was not there when the lock table was last calm, and reading it now could wait for a lock pile-up to end; it can be signalled once pgkill lists it with its name", s.userID)
			}
			l.Backends = append(l.Backends, b)
		}
	}
	return l, leader
}

// roleName is a role's name, or says that it is not known.
func (c *catalog) roleName(oid uint32) string {
	if r, ok := c.roles[oid]; ok {
		return r.name
	}
	if oid == 0 {
		return ""
	}
	return "(unknown role, oid " + strconv.FormatUint(uint64(oid), 10) + ")"
}

// dbName is a database's name, or says that it is not known.
func (c *catalog) dbName(oid uint32) string {
	if n, ok := c.dbs[oid]; ok {
		return n
	}
	if oid == 0 {
		return ""
	}
	return "(unknown database, oid " + strconv.FormatUint(uint64(oid), 10) + ")"
}

// addTree fills the listed sessions' blocking fields and lock details from
// one lock-table read, or says in l.NoTree why it could not within budget.
func (t *Target) addTree(l *Listing, lr lockRead, leader map[int32]int32, budget time.Duration) {
	if !lr.complete {
		l.NoTree = fmt.Sprintf("the blocking tree was not computed: reading the lock waits took over %s", budget)
		return
	}
	edges := lr.edges(leader)
	tr, err := buildTree(edges, leader, budget)
	if err != nil {
		l.NoTree = fmt.Sprintf("the blocking tree was not computed: %d sessions wait on locks and counting them took over %s", len(edges), budget)
		return
	}
	waits := t.locksWanted(lr.rows, leader)
	queues := map[int32]map[Lock]int{} // blocker → lock → sessions waiting directly
	for w, bs := range tr.blockedBy {
		lk, ok := waits[w]
		if !ok {
			continue
		}
		for _, b := range bs {
			if queues[b] == nil {
				queues[b] = map[Lock]int{}
			}
			queues[b][lk]++
		}
	}
	for i := range l.Backends {
		b := &l.Backends[i]
		b.BlockedBy = tr.blockedBy[b.PID]
		b.Blocking = tr.direct[b.PID]
		b.BlockingTotal = tr.total[b.PID]
		if lk, ok := waits[b.PID]; ok && len(b.BlockedBy) > 0 {
			b.WaitsFor = &lk
		}
		b.Queue = queueOf(queues[b.PID])
	}
}

// locksWanted is the lock each waiting session asks for, named with the
// catalog; a parallel worker's wait counts as its leader's.
func (t *Target) locksWanted(rows []lockRow, leader map[int32]int32) map[int32]Lock {
	cat := t.catalog()
	out := map[int32]Lock{}
	for pid, w := range wants(rows) {
		if l, ok := leader[pid]; ok {
			if _, own := out[l]; own {
				continue
			}
			pid = l
		}
		lk := Lock{Type: w.typ, Mode: w.mode, Relation: w.relName}
		if w.rel != 0 && w.relName == "" {
			lk.RelationOID = w.rel
			lk.Database = cat.dbName(w.db)
		}
		out[pid] = lk
	}
	return out
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
// In a lock pile-up it answers without the tree, as List does.
func (t *Target) Backend(ctx context.Context, pid int32) (Backend, error) {
	f := Filter{PID: pid}
	state, _ := f.check()
	l, err := t.list(ctx, f, state)
	if err != nil {
		return Backend{}, fmt.Errorf("read pid %d on %s: %w", pid, t.Name, err)
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
