package pg_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// session is a client connection standing in for an application.
type session struct {
	conn *pgx.Conn
	pid  int32
	done chan error // result of the statement started with run
	got  bool       // result already collected
	err  error
}

func newSession(t testing.TB, dsn, app string) *session {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = app
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &session{conn: conn, pid: int32(conn.PgConn().PID())}
	t.Cleanup(func() {
		if s.done != nil && !s.got { // a statement still runs: end it before closing
			_ = conn.PgConn().CancelRequest(context.Background())
			s.result(t)
		}
		conn.Close(context.Background())
	})
	return s
}

// run starts sql in the background; its error arrives on s.done.
func (s *session) run(sql string) {
	s.done, s.got = make(chan error, 1), false
	go func() {
		_, err := s.conn.Exec(context.Background(), sql)
		s.done <- err
	}()
}

// exec runs sql and waits for it.
func (s *session) exec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// result waits for the background statement's error.
func (s *session) result(t testing.TB) error {
	t.Helper()
	if s.got {
		return s.err
	}
	select {
	case s.err = <-s.done:
		s.got = true
		return s.err
	case <-time.After(20 * time.Second):
		t.Fatal("the session's statement did not end")
		return nil
	}
}

func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func newTarget(t testing.TB, dsn string, opts pg.Options) *pg.Target {
	t.Helper()
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "test", DSN: dsn}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	return tg
}

// waitBackend polls the listing until pid shows up satisfying ok.
func waitBackend(t testing.TB, tg *pg.Target, f pg.Filter, pid int32, ok func(pg.Backend) bool) pg.Backend {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		bs, err := tg.List(context.Background(), f)
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
