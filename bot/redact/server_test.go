package redact

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestServerReadsAsScan asks the server itself where the oracle reads
// otherwise: a string continued across -- comments is one constant, in
// the state of its first part (so \' escapes in the E'…' below).
func TestServerReadsAsScan(t *testing.T) {
	conn, err := pgx.Connect(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, c := range []struct{ expr, want string }{
		{"'a' -- c\n 'b'", "ab"},
		{"'a'\n-- c\n\n\t'b' -- d\r'c'", "abc"},
		{"E'a' -- c\n'\\' x'", "a' x"},
		{"X'AB' --c\n'CD'", "1010101111001101"},
		{"B'01'\n -- x\n\n'10'", "0110"},
	} {
		toks, serr := scan(c.expr)
		if toks = significant(toks); serr != nil || len(toks) != 1 || !toks[0].kind.constant() || toks[0].end != len(c.expr) {
			t.Errorf("scan(%q) = %v, %v; want one constant", c.expr, toks, serr)
		}
		var got string
		// The simple protocol sends the text as typed.
		if err := conn.QueryRow(context.Background(), "SELECT ("+c.expr+"\n)::text", pgx.QueryExecModeSimpleProtocol).Scan(&got); err != nil || got != c.want {
			t.Errorf("the server reads %q as %q (%v), want %q", c.expr, got, err, c.want)
		}
	}
}
