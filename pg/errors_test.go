package pg

import (
	"context"
	"net"
	"strings"
	"testing"
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
