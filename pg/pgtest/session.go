package pgtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Session is a client connection standing in for an application whose
// queries pgkill is to find and end.
type Session struct {
	Conn *pgx.Conn
	PID  int32
	done chan error // result of the statement started with Run
	got  bool       // result already collected
	err  error
}

// NewSession connects to dsn with application_name app. Cleanup ends any
// statement still running and closes the connection.
func NewSession(tb testing.TB, dsn, app string) *Session {
	tb.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = app
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Session{Conn: conn, PID: int32(conn.PgConn().PID())}
	tb.Cleanup(func() {
		if s.done != nil && !s.got {
			_ = conn.PgConn().CancelRequest(context.Background())
			s.Result(tb)
		}
		conn.Close(context.Background())
	})
	return s
}

// Run starts sql in the background; Result waits for its error.
func (s *Session) Run(sql string) {
	s.done, s.got = make(chan error, 1), false
	go func() {
		_, err := s.Conn.Exec(context.Background(), sql)
		s.done <- err
	}()
}

// Exec runs sql and waits for it.
func (s *Session) Exec(tb testing.TB, sql string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// Result waits (up to 20 s) for the error of the statement Run started.
func (s *Session) Result(tb testing.TB) error {
	tb.Helper()
	if s.got {
		return s.err
	}
	select {
	case s.err = <-s.done:
		s.got = true
		return s.err
	case <-time.After(20 * time.Second):
		tb.Fatal("the session's statement did not end")
		return nil
	}
}

// Running reports whether the statement Run started is still running,
// without waiting.
func (s *Session) Running() bool {
	if s.got {
		return false
	}
	select {
	case s.err = <-s.done:
		s.got = true
		return false
	default:
		return true
	}
}

// SQLState is err's SQLSTATE, or "".
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
