// Package pgtest gives tests a real PostgreSQL server, and sessions and
// lock pile-ups on it. A missing server is a test failure, never a skip.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/cluster"
)

// EnvURL names an existing server to use instead of a throwaway cluster.
const EnvURL = "PGKILL_TEST_DATABASE_URL"

var (
	once    sync.Once
	shared  string // superuser DSN
	initErr error
	stop    func()
)

// Main runs the package's tests and stops the cluster afterwards. Use it as
// func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if stop != nil {
		stop()
	}
	return code
}

// DSN returns a superuser DSN for the shared server, starting it if needed:
// a throwaway cluster (pg/cluster) started on first use and shared by every
// test of the package, or the server named by EnvURL (it must be a
// superuser: tests create roles). Without one the test fails (CI installs
// PostgreSQL).
func DSN(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { shared, stop, initErr = start() })
	if initErr != nil {
		tb.Fatalf("pgtest: no PostgreSQL server: %v (install the postgresql server package, or set %s)", initErr, EnvURL)
	}
	return shared
}

// DSNAs returns the shared server's DSN for another role (trust auth, or the
// same password, on a throwaway cluster).
func DSNAs(tb testing.TB, role string) string {
	tb.Helper()
	u, err := url.Parse(DSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// Exec runs statements as the superuser.
func Exec(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	ExecIn(tb, DSN(tb), sql, args...)
}

// ExecIn runs statements on dsn (a Database of the shared server).
func ExecIn(tb testing.TB, dsn, sql string, args ...any) {
	tb.Helper()
	onConn(tb, dsn, func(ctx context.Context, conn *pgx.Conn) {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			tb.Fatalf("pgtest: %s: %v", sql, err)
		}
	})
}

// onConn runs f on a new connection to dsn, closed after it; f has 30 s.
func onConn(tb testing.TB, dsn string, f func(ctx context.Context, conn *pgx.Conn)) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	f(ctx, conn)
}

// Int runs a query returning one integer, as the superuser: tests wait on
// conditions such as "n sessions wait on a lock" with it.
func Int(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	return scalar[int](tb, sql, args...)
}

// Text runs a query returning one text value, as the superuser.
func Text(tb testing.TB, sql string, args ...any) string {
	tb.Helper()
	return scalar[string](tb, sql, args...)
}

func scalar[T any](tb testing.TB, sql string, args ...any) T {
	tb.Helper()
	var v T
	onConn(tb, DSN(tb), func(ctx context.Context, conn *pgx.Conn) {
		if err := conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
			tb.Fatalf("pgtest: %s: %v", sql, err)
		}
	})
	return v
}

// Role creates a login role once per run (tests share the server), with the
// given grants, e.g. Role(t, "watcher", "pg_signal_backend", "pg_read_all_stats").
func Role(tb testing.TB, name string, grants ...string) string {
	tb.Helper()
	Exec(tb, fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s LOGIN; END IF;
END $$`, quoteLit(name), quoteIdent(name)))
	for _, g := range grants {
		Exec(tb, fmt.Sprintf("GRANT %s TO %s", quoteIdent(g), quoteIdent(name)))
	}
	return DSNAs(tb, name)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
func quoteLit(s string) string   { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

func start() (string, func(), error) {
	if u := os.Getenv(EnvURL); u != "" {
		return u, func() {}, nil
	}
	c, err := cluster.Start(cluster.Options{Prepare: requirePasswords, Settings: []string{
		// Room for the pg benchmarks' 2,000 backends and 1,000 lock waiters
		// (each costs shared memory only when connected; shared_buffers stays
		// small), and 64 kB query texts as busy servers configure them: a
		// restart-level setting, so it is set here (the later -c wins).
		"max_connections=2200",
		"track_activity_query_size=65536",
	}})
	if err != nil {
		return "", nil, err
	}
	return c.DSN, func() { _ = c.Stop() }, nil
}

// Database creates database name once per run (tests share the server) and
// returns the superuser's DSN for it: a test that needs tables of its own
// uses one.
func Database(tb testing.TB, name string) string {
	tb.Helper()
	dsn := DSN(tb)
	dbMu.Lock()
	defer dbMu.Unlock()
	if Int(tb, "SELECT count(*)::int FROM pg_database WHERE datname = $1", name) == 0 {
		Exec(tb, "CREATE DATABASE "+quoteIdent(name))
	}
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

var dbMu sync.Mutex
