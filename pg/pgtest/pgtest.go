// Package pgtest gives tests a real PostgreSQL server: a throwaway cluster
// started on first use (initdb + pg_ctl on a temp dir and a free port, as the
// postgres OS user when running as root) and shared by every test of the
// package, or the server named by PGKILL_TEST_DATABASE_URL (it must be a
// superuser: tests create roles).
//
// A missing server is a test failure, never a skip: CI installs PostgreSQL.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

// DSN returns a superuser DSN for the shared server, starting it if needed.
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// Int runs a query returning one integer, as the superuser: tests wait on
// conditions such as "n sessions wait on a lock" with it.
func Int(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		tb.Fatalf("pgtest: %s: %v", sql, err)
	}
	return n
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
	bin, err := findBin()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "pgkill-pgtest-*")
	if err != nil {
		return "", nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// initdb refuses to run as root.
		pgUser, err := user.Lookup("postgres")
		if err != nil {
			return "", nil, fmt.Errorf("running as root needs the postgres OS user: %w", err)
		}
		uid, _ := strconv.Atoi(pgUser.Uid)
		gid, _ := strconv.Atoi(pgUser.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", nil, err
		}
	}
	run := func(name string, args ...string) error {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	opts := strings.Join([]string{
		"-p " + strconv.Itoa(port),
		"-c listen_addresses=127.0.0.1",
		"-c unix_socket_directories=" + dir,
		// Room for the pg benchmarks' 2,000 backends and 1,000 lock waiters
		// (each costs shared memory only when connected; shared_buffers stays
		// small), and 64 kB query texts as busy servers configure them: a
		// restart-level setting, so it is set here.
		"-c max_connections=2200",
		"-c track_activity_query_size=65536",
		"-c max_prepared_transactions=10",
		"-c fsync=off",
		"-c synchronous_commit=off",
		"-c full_page_writes=off",
		"-c shared_buffers=32MB",
	}, " ")
	if err := run("pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stopFn := func() {
		_ = run("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w")
		os.RemoveAll(dir)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), stopFn, nil
}

// findBin finds initdb on PATH or under /usr/lib/postgresql/*/bin (Debian
// keeps the server binaries off PATH), the newest version first.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	if len(dirs) == 0 {
		return "", fmt.Errorf("initdb not found on PATH or under /usr/lib/postgresql/*/bin")
	}
	return filepath.Dir(dirs[0]), nil
}

func version(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Database creates database name once per run (tests share the server) and
// returns the superuser's DSN for it: a test that needs tables of its own
// uses one.
func Database(tb testing.TB, name string) string {
	tb.Helper()
	dsn := DSN(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	dbMu.Lock()
	defer dbMu.Unlock()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		tb.Fatal(err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+quoteIdent(name)); err != nil {
			tb.Fatal(err)
		}
	}
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

var dbMu sync.Mutex
