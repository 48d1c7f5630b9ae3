package pg

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg/match"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// While the lock table does not answer (here: a session holds pg_locks
// itself, so reading it waits), the listing answers within its budget from
// the lifeline: every session, the likely root marked, Degraded and why.
// Terminate works from it; Complete brings the tree once the lock table
// answers. Neither connection is replaced meanwhile. (The protection rule
// matches no session: the signal checks it, in SQL, all the same.)
func TestListDegradesWhileLockTableBusy(t *testing.T) {
	dsn, holder, waiter := heldRow(t, "degrade")
	tg, err := NewTarget(TargetSpec{Name: "degrade", DSN: dsn}, Options{Protect: match.Rules{{User: "nobody", App: "degrade_*"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	f := Filter{Application: "degrade_*"}
	awaitListing(t, tg, f, func(l Listing) bool { return backendOf(l, holder.PID).RootBlocker() })
	life, locks := tg.sessionPID(t, tg.life), tg.sessionPID(t, tg.locks)

	blocker := pgtest.NewSession(t, dsn, "degrade_blocker")
	blocker.Exec(t, "BEGIN; LOCK TABLE pg_catalog.pg_locks IN ACCESS EXCLUSIVE MODE")
	l, err := tg.List(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	h := backendOf(l, holder.PID)
	if !l.Degraded || !h.LikelyRoot || h.RootBlocker() || l.LockWaits != 1 || len(l.Backends) != 3 ||
		!strings.Contains(l.NoTree, "the lock table is busy: 1 sessions are waiting on locks") {
		t.Fatalf("listing while pg_locks is held: degraded %v, lock waits %d, holder %+v, %d listed, NoTree %q",
			l.Degraded, l.LockWaits, h, len(l.Backends), l.NoTree)
	}
	b, err := tg.Backend(context.Background(), holder.PID)
	if err != nil || !b.LikelyRoot {
		t.Fatalf("Backend while pg_locks is held: %+v, %v", b, err)
	}
	out, err := tg.Signal(context.Background(), Terminate, b.Identity)
	if err != nil || out.Result != Sent {
		t.Fatalf("terminate while pg_locks is held: %+v, %v", out, err)
	}
	if err := waiter.Result(t); err != nil {
		t.Fatalf("the waiter: %v", err)
	}

	blocker.Exec(t, "COMMIT")
	full, err := tg.Complete(context.Background(), l)
	for err == nil && full.Degraded {
		full, err = tg.Complete(context.Background(), full)
	}
	if err != nil || full.NoTree != "" || full.LockWaits != 0 {
		t.Fatalf("complete: %+v, %v", full, err)
	}
	if got := [2]uint32{tg.sessionPID(t, tg.life), tg.sessionPID(t, tg.locks)}; got != [2]uint32{life, locks} {
		t.Errorf("sessions went from %d, %d to %v: a stalled read must not cost a connection", life, locks, got)
	}
}

// A server that accepts connections and then stays silent (as one does in
// a lock pile-up, until it ends) gets one connection attempt at a time,
// however many callers ask, and after an attempt timed out no other for a
// while: callers are told why at once.
func TestNoConnectionStormOfOurOwn(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	tg, err := NewTarget(TargetSpec{Name: "silent", DSN: "postgres://u:pw@" + ln.Addr().String() + "/db?sslmode=disable"},
		Options{ConnectTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	list := func(n int, wait time.Duration) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				_, errs[i] = tg.List(ctx, Filter{})
			}()
		}
		wg.Wait()
		return errs
	}
	for _, err := range list(20, 500*time.Millisecond) {
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("while the attempt waits: %v, want a timeout", err)
		}
	}
	// The attempt began with the first caller's deadline: wait for its end.
	for deadline := time.Now().Add(10 * time.Second); tg.life.stuck(0); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection attempt never ended")
		}
	}
	start := time.Now()
	for _, err := range list(20, 5*time.Second) {
		if err == nil || !strings.Contains(err.Error(), "pgkill opens no new connection to silent before") ||
			!strings.Contains(err.Error(), "had not started the session") {
			t.Errorf("after a timed-out attempt: %v", err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("refusals took %s: they should not wait", d)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections accepted, want 1", n)
	}
}

// withTree lists with the blocking tree: a loaded machine may take longer
// than the tree's budget to read the lock table, and Complete waits for it.
func withTree(t testing.TB, tg *Target, f Filter) Listing {
	t.Helper()
	l, err := tg.List(context.Background(), f)
	for err == nil && l.Degraded {
		l, err = tg.Complete(context.Background(), l)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// awaitListing lists until ok.
func awaitListing(t *testing.T, tg *Target, f Filter, ok func(Listing) bool) Listing {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := tg.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing never as wanted: %+v", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func backendOf(l Listing, pid int32) Backend {
	for _, b := range l.Backends {
		if b.PID == pid {
			return b
		}
	}
	return Backend{}
}

// sessionPID is the server pid of l's connection.
func (t *Target) sessionPID(tb testing.TB, l *lane) uint32 {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		tb.Fatalf("%s not connected", l.name)
	}
	return l.conn.PgConn().PID()
}

// The keeper keeps both connections open and the catalog fresh without a
// caller: it replaces a lifeline and a lock-table connection the server
// ended, and reads a role created since, while the lock table is calm.
func TestKeeper(t *testing.T) {
	dsn := pgtest.Role(t, "keeper_role", "pg_signal_backend", "pg_read_all_stats")
	tg, err := NewTarget(TargetSpec{Name: "kept", DSN: dsn}, Options{Keepalive: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if err := tg.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	sessions := func() int {
		return pgtest.Int(t, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'keeper_role' AND application_name = $1", AppName)
	}
	awaitInt(t, "keeper_role's sessions", sessions, 2) // the keeper opened the lock-table connection
	pgtest.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'keeper_role'")
	awaitInt(t, "keeper_role's sessions after both were ended", sessions, 2)

	newcomer := "keeper_newcomer_" + strconv.FormatInt(time.Now().UnixNano(), 36) // new in each run (-count)
	pgtest.Role(t, newcomer)
	awaitInt(t, "the newcomer in the catalog", func() int {
		for _, r := range tg.catalog().roles {
			if r.name == newcomer {
				return 1
			}
		}
		return 0
	}, 1)
}

func awaitInt(t *testing.T, what string, f func() int, want int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := f()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, got, want)
		}
	}
}

// A role that appears while sessions wait on locks is not read (reading
// it could wait for a pile-up): its sessions are listed by role OID and
// never signalled until a calm listing has read it.
func TestRoleUnknownWhileLocksWait(t *testing.T) {
	dsn, holder, waiter := heldRow(t, "late")
	tg, err := NewTarget(TargetSpec{Name: "late", DSN: dsn}, Options{Keepalive: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	awaitListing(t, tg, Filter{Application: "late_*"}, func(l Listing) bool { return l.LockWaits == 1 })

	role := "late_role_" + strconv.FormatInt(time.Now().UnixNano(), 36) // new in each run (-count)
	late := pgtest.NewSession(t, replaceDB(pgtest.Role(t, role), "late"), "late_newcomer")
	late.Run("SELECT pg_sleep(60)")
	l := awaitListing(t, tg, Filter{Application: "late_newcomer"}, func(l Listing) bool { return len(l.Backends) == 1 })
	b := l.Backends[0]
	if !strings.HasPrefix(b.User, "(unknown role, oid ") || b.Signallable() || !strings.Contains(b.Protected, "not known to pgkill yet") {
		t.Fatalf("a role that appeared while a session waits: %+v", b)
	}
	out, err := tg.Signal(context.Background(), Terminate, b.Identity)
	if err != nil || out.Result != Denied || !strings.Contains(out.Message, "could not check") {
		t.Fatalf("signalling it: %+v, %v", out, err)
	}

	holder.Exec(t, "ROLLBACK")
	if err := waiter.Result(t); err != nil {
		t.Fatal(err)
	}
	l = awaitListing(t, tg, Filter{Application: "late_newcomer"}, func(l Listing) bool { return len(l.Backends) == 1 && l.Backends[0].User == role })
	if !l.Backends[0].Signallable() {
		t.Errorf("once calm: %+v", l.Backends[0])
	}
}

// replaceDB is dsn with database db.
func replaceDB(dsn, db string) string {
	i := strings.LastIndex(dsn, "/")
	j := strings.Index(dsn[i:], "?")
	if j < 0 {
		return dsn[:i+1] + db
	}
	return dsn[:i+1] + db + dsn[i+j:]
}

// heldRow makes database db with a row that db_holder updated and holds
// (idle in its transaction), and db_waiter waits to update.
func heldRow(t *testing.T, db string) (dsn string, holder, waiter *pgtest.Session) {
	t.Helper()
	dsn = pgtest.Database(t, db)
	pgtest.ExecIn(t, dsn, "CREATE TABLE IF NOT EXISTS hot (id int PRIMARY KEY, v int); INSERT INTO hot VALUES (1, 0) ON CONFLICT DO NOTHING")
	holder = pgtest.NewSession(t, dsn, db+"_holder")
	holder.Exec(t, "BEGIN; UPDATE hot SET v = v + 1 WHERE id = 1")
	waiter = pgtest.NewSession(t, dsn, db+"_waiter")
	waiter.Run("UPDATE hot SET v = v + 1 WHERE id = 1")
	return dsn, holder, waiter
}
