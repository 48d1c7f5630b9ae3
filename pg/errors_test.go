package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A connection that fails is said once: pgx tries TLS and then plaintext
// (sslmode=prefer), and names the address in each attempt and again in
// each cause.
func TestConnectErrorSaidOnce(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tg, err := NewTarget(TargetSpec{Name: "refused", DSN: "postgres://u:sekrit@" + addr + "/db"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	err = tg.Ping(context.Background())
	msg := err.Error()
	if strings.Count(msg, "connection refused") != 1 || strings.Count(msg, addr) != 1 || strings.Contains(msg, "sekrit") ||
		!strings.Contains(msg, "could not connect (user u, database db): "+addr+": connection refused") {
		t.Errorf("error = %q", msg)
	}
}

// safe is an error pgx marks as written to nobody.
type safe struct{}

func (safe) Error() string     { return "dial: connection refused" }
func (safe) SafeToRetry() bool { return true }

// A statement that reads runs again whenever its session ended under it; a
// statement that signals only when pgx sent none of it.
func TestRunAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		err            error
		reads, signals bool
	}{
		{"none", nil, false, false},
		{"nothing written", fmt.Errorf("query: %w", safe{}), true, true},
		{"reply lost", io.ErrUnexpectedEOF, true, false},
		{"connection closed after the statement", fmt.Errorf("read: %w", io.EOF), true, false},
		{"session ended under it", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true, false},
		{"server refused", &pgconn.PgError{Code: "42501"}, false, false},
		{"statement timeout", &pgconn.PgError{Code: "57014"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reads.again(tc.err); got != tc.reads {
				t.Errorf("reads.again(%v) = %v, want %v", tc.err, got, tc.reads)
			}
			if got := signals.again(tc.err); got != tc.signals {
				t.Errorf("signals.again(%v) = %v, want %v", tc.err, got, tc.signals)
			}
		})
	}
}

// An error already in pgkill's words keeps them when translated again,
// even when the server's error is inside it.
func TestTranslateKeepsOwnWords(t *testing.T) {
	t.Parallel()
	l := &lane{name: "lifeline", target: "prod"}
	err := translate(fmt.Errorf("terminate 1 backends on prod: %w", translate(l.lost("the signal", &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}))))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "was lost after the signal was sent, before its answer came") {
		t.Errorf("translated: %v", err)
	}
}
