package pg_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func newTarget(t testing.TB, dsn string, opts pg.Options) *pg.Target {
	t.Helper()
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "test", DSN: dsn}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	return tg
}

// withTree lists with the blocking tree: a loaded machine may take longer
// than the tree's budget to read the lock table, and Complete waits for it.
func withTree(t testing.TB, tg *pg.Target, f pg.Filter) pg.Listing {
	t.Helper()
	l, err := tg.List(ctx(t), f)
	for err == nil && l.Degraded {
		l, err = tg.Complete(ctx(t), l)
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitBackend polls the listing until pid shows up satisfying ok.
func waitBackend(t testing.TB, tg *pg.Target, f pg.Filter, pid int32, ok func(pg.Backend) bool) pg.Backend {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, err := tg.List(context.Background(), f)
		bs := l.Backends
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.PID == pid && (ok == nil || ok(b)) {
				return b
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never listed with filter %+v; got %+v", pid, f, bs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func createDB(t testing.TB, name string) error {
	t.Helper()
	c := ctx(t)
	conn, err := pgx.Connect(c, pgtest.DSN(t))
	if err != nil {
		return err
	}
	defer conn.Close(c)
	var exists bool
	if err := conn.QueryRow(c, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil || exists {
		return err
	}
	_, err = conn.Exec(c, "CREATE DATABASE "+name)
	return err
}

func replaceDB(dsn, db string) string {
	i := strings.LastIndex(dsn, "/")
	j := strings.Index(dsn[i:], "?")
	if j < 0 {
		return dsn[:i+1] + db
	}
	return dsn[:i+1] + db + dsn[i+j:]
}

// sleepers starts n sessions of app on dsn, each running a long sleep,
// and returns them with their identities as tg lists them.
func sleepers(t testing.TB, dsn string, tg *pg.Target, app string, n int) ([]*pgtest.Session, []pg.Identity) {
	t.Helper()
	var ss []*pgtest.Session
	var ids []pg.Identity
	for range n {
		s := pgtest.NewSession(t, dsn, app)
		s.Run("SELECT pg_sleep(60)")
		ss = append(ss, s)
		ids = append(ids, waitBackend(t, tg, pg.Filter{Application: app}, s.PID, nil).Identity)
	}
	return ss, ids
}

// endOurSessions has the server end pgkill's sessions of role, as a
// restart or an administrator's pg_terminate_backend would, and waits
// until they are gone.
func endOurSessions(t testing.TB, role string) {
	t.Helper()
	const ours = "FROM pg_stat_activity WHERE usename = $1 AND application_name = $2"
	pgtest.Exec(t, "SELECT pg_terminate_backend(pid) "+ours, role, pg.AppName)
	deadline := time.Now().Add(15 * time.Second)
	for pgtest.Int(t, "SELECT count(*)::int "+ours, role, pg.AppName) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pgkill's sessions of role %s did not end", role)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
