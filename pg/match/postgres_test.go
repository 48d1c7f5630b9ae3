package match_test

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/match"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// regexpSQL matches as the signalling statement does (pg/signal.go).
const regexpSQL = `SELECT array_agg(s ~ (r COLLATE "C") ORDER BY i) FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS m(s, r, i)`

// TestRegexpPostgres asks PostgreSQL to match names against Regexp's
// translation of random patterns (and the fuzz seeds), and compares with
// Pattern: the signal checks protection in SQL, the listing in Go.
func TestRegexpPostgres(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(18, 1))
	var pats, names []string
	add := func(p, s string) {
		pats, names = append(pats, p), append(names, s)
	}
	for _, tc := range []struct{ p, s string }{
		{"", "x"}, {"pg_dump*", "pg_dumpall"}, {"*[^a]*b", "c/b"}, {"*[^é]x", "éx"}, {"[\\]-\\^]?", "^x"},
		{"(a|b)+$", "(a|b)+$"}, {"(a|b)+$", "a"}, {"x{2}", "x{2}"}, {"x{2}", "xx"}, {"\\a\\1", "a1"},
		{"[[:alpha:]]", "a"}, {"[[:alpha:]]", ":]"}, {"[[.a.]]", ".]"}, {"a.c", "abc"}, {"[z-a]", "m"}, {"[^z-a]", "/"},
		{"***", "a\nb"}, {"[^/]", "\n"}, {"A*", "a"}, {"É*", "é"}, {"*\\\\*", "a\\b"}, {"[\U0010FFFF-\U0010FFFF]", "\U0010FFFF"},
	} {
		add(tc.p, tc.s)
	}
	for len(pats) < 20000 {
		p := randText(rng, "ab/é*?[]^-\\.()|+${}:= ", 1+rng.IntN(8))
		if match.CheckPattern(p) != nil {
			continue
		}
		for range 4 {
			add(p, randText(rng, "ab/é-]^\\.()$: \n", rng.IntN(8)))
		}
		add(p, instance(rng, p))
	}
	res := make([]string, len(pats))
	for i, p := range pats {
		re, err := match.Regexp(p)
		if err != nil {
			t.Fatal(err)
		}
		res[i] = re
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got []bool
	if err := conn.QueryRow(ctx, regexpSQL, names, res).Scan(&got); err != nil {
		t.Fatal(err)
	}
	matched, bad := 0, 0
	for i := range pats {
		want := match.Pattern(pats[i], names[i])
		if got[i] != want {
			if bad++; bad <= 20 {
				t.Errorf("pattern %q, name %q: PostgreSQL (%q) says %v, Pattern %v", pats[i], names[i], res[i], got[i], want)
			}
		}
		if want {
			matched++
		}
	}
	if bad > 20 {
		t.Errorf("… %d disagreements in all", bad)
	}
	if matched < len(pats)/10 || matched > len(pats)*9/10 {
		t.Errorf("%d of %d pairs match: too one-sided to compare", matched, len(pats))
	}
}

func randText(rng *rand.Rand, alphabet string, n int) string {
	rs := []rune(alphabet)
	var b strings.Builder
	for range n {
		b.WriteRune(rs[rng.IntN(len(rs))])
	}
	return b.String()
}

// instance is a name p is likely to match: its stars filled in, its ?
// and classes by a character of the pattern, its escapes undone.
func instance(rng *rand.Rand, p string) string {
	var b strings.Builder
	rs := []rune(p)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '*':
			b.WriteString(randText(rng, "ab.é", rng.IntN(3)))
		case '?':
			b.WriteString(randText(rng, "ab-é", 1))
		case '[':
			j := slices.Index(rs[i+1:], ']')
			if j < 0 {
				return b.String()
			}
			b.WriteString(randText(rng, "ab/é-^", 1))
			i += j + 1
		case '\\':
			if i+1 < len(rs) {
				i++
				b.WriteRune(rs[i])
			}
		default:
			b.WriteRune(rs[i])
		}
	}
	return b.String()
}
