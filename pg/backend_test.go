package pg_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestListSleep(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "list_sleep")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{MinDuration: 100 * time.Millisecond, Application: "list_sleep"}, s.PID, nil)

	if b.State != pg.StateActive || b.Database != "postgres" || b.User != "postgres" || b.Application != "list_sleep" {
		t.Errorf("backend = %+v", b)
	}
	if !strings.Contains(b.Query, "pg_sleep(60)") || b.WaitEvent != "PgSleep" || b.BackendType != "client backend" {
		t.Errorf("query/wait/type = %q %q %q", b.Query, b.WaitEvent, b.BackendType)
	}
	if b.Duration < 100*time.Millisecond || b.BackendStart.IsZero() || b.QueryStart.IsZero() || b.ServerStart.IsZero() {
		t.Errorf("duration/identity = %v %+v", b.Duration, b.Identity)
	}
	if b.Client != "127.0.0.1" || !b.Signallable() || b.Target != "test" {
		t.Errorf("client/protected/target = %q %q %q", b.Client, b.Protected, b.Target)
	}
	// A threshold longer than the query has run hides it.
	l, err := tg.List(ctx(t), pg.Filter{MinDuration: time.Hour, Application: "list_sleep"})
	bs := l.Backends
	if err != nil || len(bs) != 0 {
		t.Errorf("with 1h threshold: %v, %v", bs, err)
	}
}

func TestListIdleInTransaction(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "list_idle_tx")
	s.Exec(t, "BEGIN; SELECT 1")
	tg := newTarget(t, dsn, pg.Options{})
	f := pg.Filter{MinDuration: 50 * time.Millisecond, Application: "list_idle_tx", State: "idle-in-transaction"}
	b := waitBackend(t, tg, f, s.PID, nil)
	if b.State != pg.StateIdleInTransaction || b.XactStart.IsZero() || !b.State.Idle() {
		t.Errorf("backend = %+v", b)
	}
	l, err := tg.List(ctx(t), pg.Filter{Application: "list_idle_tx", State: "active"})
	bs := l.Backends
	if err != nil || len(bs) != 0 {
		t.Errorf("state=active listed %v, %v", bs, err)
	}
}

func TestListLockChain(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pgtest.Exec(t, "CREATE TABLE IF NOT EXISTS lockchain (id int)")
	a := pgtest.NewSession(t, dsn, "chain_a")
	a.Exec(t, "BEGIN; LOCK TABLE lockchain IN ACCESS SHARE MODE")
	b := pgtest.NewSession(t, dsn, "chain_b")
	b.Run("BEGIN; LOCK TABLE lockchain IN ACCESS EXCLUSIVE MODE")
	tg := newTarget(t, dsn, pg.Options{})
	waitBackend(t, tg, pg.Filter{Application: "chain_b"}, b.PID, func(x pg.Backend) bool { return x.WaitEventType == "Lock" })
	c := pgtest.NewSession(t, dsn, "chain_c")
	c.Run("SELECT count(*) FROM lockchain")
	waitBackend(t, tg, pg.Filter{Application: "chain_c"}, c.PID, func(x pg.Backend) bool { return x.WaitEventType == "Lock" })

	bs := withTree(t, tg, pg.Filter{}).Backends
	byPID := map[int32]pg.Backend{}
	for _, x := range bs {
		byPID[x.PID] = x
	}
	ga, gb, gc := byPID[a.PID], byPID[b.PID], byPID[c.PID]
	if !slices.Equal(gb.BlockedBy, []int32{a.PID}) || !slices.Equal(gc.BlockedBy, []int32{b.PID}) {
		t.Errorf("blocked by: b %v (want %d), c %v (want %d)", gb.BlockedBy, a.PID, gc.BlockedBy, b.PID)
	}
	if ga.Blocking != 1 || ga.BlockingTotal != 2 || !ga.RootBlocker() {
		t.Errorf("a blocks %d direct, %d total, root=%v; want 1, 2, true", ga.Blocking, ga.BlockingTotal, ga.RootBlocker())
	}
	if gb.Blocking != 1 || gb.BlockingTotal != 1 || gb.RootBlocker() {
		t.Errorf("b blocks %d direct, %d total, root=%v; want 1, 1, false", gb.Blocking, gb.BlockingTotal, gb.RootBlocker())
	}
	if gc.Blocking != 0 {
		t.Errorf("c blocks %d", gc.Blocking)
	}
	a.Exec(t, "COMMIT")
	if err := b.Result(t); err != nil {
		t.Error(err)
	}
	b.Exec(t, "COMMIT")
	if err := c.Result(t); err != nil {
		t.Error(err)
	}
}

func TestListPreparedTransactionBlocker(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pgtest.Exec(t, "CREATE TABLE IF NOT EXISTS prepblock (id int)")
	p := pgtest.NewSession(t, dsn, "prep_holder")
	p.Exec(t, "BEGIN; LOCK TABLE prepblock IN ACCESS EXCLUSIVE MODE; PREPARE TRANSACTION 'pgkill_test_prep'")
	w := pgtest.NewSession(t, dsn, "prep_waiter")
	w.Run("SELECT count(*) FROM prepblock")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "prep_waiter"}, w.PID, func(x pg.Backend) bool { return len(x.BlockedBy) > 0 })
	if !b.BlockedByPreparedXact() {
		t.Errorf("blocked by %v, want a prepared transaction (0)", b.BlockedBy)
	}
	pgtest.Exec(t, "ROLLBACK PREPARED 'pgkill_test_prep'")
	if err := w.Result(t); err != nil {
		t.Error(err)
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pgtest.Exec(t, "SELECT 1") // start the server before creating objects
	pgtest.Role(t, "filter_user")
	if err := createDB(t, "filterdb"); err != nil {
		t.Fatal(err)
	}
	s1 := pgtest.NewSession(t, dsn, "filter_a")
	s1.Run("SELECT pg_sleep(60)")
	s2 := pgtest.NewSession(t, replaceDB(pgtest.DSNAs(t, "filter_user"), "filterdb"), "filter_b")
	s2.Run("SELECT pg_sleep(60)")
	s3 := pgtest.NewSession(t, dsn, "filter_c")
	s3.Exec(t, "BEGIN; SELECT 1")
	tg := newTarget(t, dsn, pg.Options{})
	for _, s := range []*pgtest.Session{s1, s2} {
		waitBackend(t, tg, pg.Filter{}, s.PID, func(b pg.Backend) bool { return b.State == pg.StateActive })
	}
	waitBackend(t, tg, pg.Filter{}, s3.PID, nil)

	tests := []struct {
		name   string
		filter pg.Filter
		want   []int32
	}{
		{"database", pg.Filter{Database: "filterdb"}, []int32{s2.PID}},
		{"user", pg.Filter{User: "filter_user"}, []int32{s2.PID}},
		{"application", pg.Filter{Application: "filter_a"}, []int32{s1.PID}},
		{"state active", pg.Filter{State: "active"}, []int32{s1.PID, s2.PID}},
		{"state idle in transaction", pg.Filter{State: "idle-in-transaction"}, []int32{s3.PID}},
		{"state all", pg.Filter{State: "all"}, []int32{s1.PID, s2.PID, s3.PID}},
		{"pid", pg.Filter{PID: s3.PID}, []int32{s3.PID}},
	}
	mine := []int32{s1.PID, s2.PID, s3.PID}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := tg.List(ctx(t), tc.filter)
			bs := l.Backends
			if err != nil {
				t.Fatal(err)
			}
			var got []int32
			for _, b := range bs {
				if slices.Contains(mine, b.PID) {
					got = append(got, b.PID)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	if _, err := tg.List(ctx(t), pg.Filter{State: "sleeping"}); err == nil {
		t.Error("bad state accepted")
	}
}

func TestListExcludesOwnSessions(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, pgtest.DSN(t), pg.Options{})
	l, err := tg.List(ctx(t), pg.Filter{State: "all"})
	bs := l.Backends
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Application == pg.AppName {
			t.Errorf("our own session listed: %+v", b)
		}
	}
	// Even asked by pid, our own session is not there.
	var pid int32
	conn := pgtest.NewSession(t, pgtest.DSN(t), pg.AppName)
	pid = conn.PID
	if _, err := tg.Backend(ctx(t), pid); err == nil {
		t.Error("a pgkill session of our role was listed")
	}
}

func TestListProtected(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pgtest.Role(t, "prot_app_user")
	s := pgtest.NewSession(t, pgtest.DSNAs(t, "prot_app_user"), "prot_backup")
	s.Run("SELECT pg_sleep(60)")
	tests := []struct {
		name string
		opts pg.Options
		want string
	}{
		{"none", pg.Options{}, ""},
		{"user", pg.Options{Protect: match.Rules{{User: "rdsadmin"}, {User: "prot_app_user"}}}, "protected (user=prot_app_user)"},
		{"app", pg.Options{Protect: match.Rules{{App: "prot_backup"}}}, "protected (app=prot_backup)"},
		{"both", pg.Options{Protect: match.Rules{{User: "prot_app_user", App: "prot_*"}}}, "protected (user=prot_app_user app=prot_*)"},
		{"other user", pg.Options{Protect: match.Rules{{User: "backup", App: "prot_backup"}}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t, dsn, tc.opts)
			b := waitBackend(t, tg, pg.Filter{Application: "prot_backup"}, s.PID, nil)
			if b.Protected != tc.want {
				t.Errorf("protected = %q, want %q", b.Protected, tc.want)
			}
		})
	}
}

func TestListSuperuserNotSignallableForSignalBackendMember(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	watcher := pgtest.Role(t, "su_watcher", "pg_signal_backend", "pg_read_all_stats")
	s := pgtest.NewSession(t, dsn, "su_victim") // postgres is a superuser
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, watcher, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "su_victim"}, s.PID, nil)
	if b.Signallable() || !strings.Contains(b.Protected, "superuser") || !b.Superuser {
		t.Errorf("superuser backend for a pg_signal_backend member: protected=%q super=%v", b.Protected, b.Superuser)
	}
	// And PostgreSQL agrees: the attempt is denied, with the fix.
	out, err := tg.Signal(ctx(t), pg.Cancel, b.Identity)
	if err != nil || out.Result != pg.Denied || !strings.Contains(out.Message, "SUPERUSER") || !strings.Contains(out.Fix, "only a superuser") {
		t.Errorf("signal superuser backend = %+v, %v", out, err)
	}
}
