package redact

import (
	"testing"
	"unicode/utf8"
)

// postgresSeeds are texts on which scan and PostgreSQL's scanner are most
// likely to part: the red team's forms and the corners of scan.l.
var postgresSeeds = []string{
	"SELECT attrs?$$secret$$, t?$tag$x$tag$, a.$$x$$, a#$$x$$, a!$$x$$, a@$$x$$, a/$$x$$",
	"SELECT $ä$x$ä$, $日本$x$日本$, $_$x$_$, $a1$x$a1$, $ä$a$ä$ AS v, $$ $ä$ $$, $1$$x$$, 1$$x$$",
	"SELECT a$b, x$$y$$, é$$z$$, $a, $1a, $",
	"SELECT 'a' -- c\n 'b', 'a'\r'b', 'a' /* c */\n'b', 'a' 'b', 'a'\n\n-- x\n\t'b'",
	"SELECT E'a'\n'\\' x', B'01'\n'10', X'AB' \n 'CD', U&'a'\n'b', B'01''10'",
	"SELECT E'\\'', E'\\\\', E'\\x41\\101\\u0041\\U00000041', E'\\uD83D\\uDE00', E'\\xff', E'\\0', E'\\u12', E'\\uD800x', E'\\U00110000', E'\\u0000'",
	"SELECT E'\\xc3\\xa9', E'\\303\\251', e'\\q\\n\\t\\b\\f\\r'",
	"SELECT 'a\\'', 'b'",
	"SELECT 'a\\\\', 'b\\\\\\'', 'c'",
	"SELECT U&'d\\0061t\\+000061' UESCAPE '!', U&\"d!0061t\" UESCAPE '!', u&x, U&1, U&'', U&\"\"",
	"SELECT n'x', N'y', nchar, n 'z', e 'w'",
	"SELECT 42, 3.14, .5, 1., 1.e3, 1e10, 2.5E-3, 1e+5, 0x1F, 0X_1f, 0o17, 0b101, 1_000_000, 1..10, a[1:2], 1.5.3",
	"SELECT 123abc", "SELECT 1e", "SELECT 1e+", "SELECT 0x", "SELECT 0x1g", "SELECT 0x1F$", "SELECT 1_", "SELECT 1__2",
	"SELECT 1.x", "SELECT .5e", "SELECT 1$", "SELECT 1é", "SELECT 0b12", "SELECT 0o8", "SELECT 1e5x", "SELECT 1.5_",
	"SELECT a+-1, a-+1, a*-1, a<-1, a@-1, a!=-1, a?-1, a~-1, a<=>b, a=>b, a::int, a:=1, a->>'k', a#-'{x}', a?|b, a?&b",
	"SELECT a=--c\n1, a+/*c*/1, a/*c*/+1, 1 */* c */ 2, a--\n, a-/**/-1, a/**/b",
	"SELECT /* a /* b */ c */ 1, /*/ x */ 2, /**/3, /*** x ***/4, /*/**/*/5",
	`SELECT "a""b", "it's", "/* x */", "", U&"a b"`,
	"SELECT '\v', 1\v+2, '\f', 'x'\f'y'",
	"SELECT 'unterminated", "SELECT 1 /* unterminated", "SELECT $$ unterminated", "SELECT \"unterminated", "SELECT E'\\",
	"SELECT a ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~ b",
	"SELECT a \\ b { c } d",
	"SET app.secret = sk_live_setvalue; SET search_path TO a, \"B\", public; SET LOCAL x TO -5; SET SESSION y = 1.5",
	"SET TIME ZONE 'UTC'; SET TIME ZONE utc; SET ROLE r; SET SESSION AUTHORIZATION a; SET NAMES 'utf8'; SET XML OPTION DOCUMENT; SET SCHEMA 's'",
	"ALTER ROLE app IN DATABASE db SET app.key = sk_live_role; ALTER USER u SET x TO -5; ALTER DATABASE d SET y TO z; ALTER SYSTEM SET w = v",
	"CREATE FUNCTION f() RETURNS int SET search_path = a, b SET x TO 1 LANGUAGE sql AS $$ SELECT 1 $$; ALTER FUNCTION f() SET app.k TO v",
	"UPDATE t SET a = b, c = 'x' WHERE d = e; ALTER TABLE t SET (fillfactor = 70)",
	"DO $$\nBEGIN\n  LOOP\n    PERFORM pg_sleep(1);\n    RAISE NOTICE 'cancel ignored';\n  END LOOP;\nEND $$",
	"DO 'BEGIN RAISE NOTICE ''x''; SET app.k = v; END'; DO LANGUAGE plpgsql $$BEGIN PERFORM 1; END$$",
	"DO $o$ BEGIN EXECUTE $i$ SELECT 'inner' $i$; CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $f$ SELECT 'nested' $f$; END $o$",
	"CREATE OR REPLACE FUNCTION f(a text DEFAULT 'x') RETURNS int AS $body$ BEGIN RETURN length(a || 'y'); END $body$ LANGUAGE plpgsql",
	"SELECT 1 -- no newline at the end",
	"SELECT 'mañana', \"naïve\", ñ, 日本, 'ü' 'x'",
	"\x00SELECT 1", "SELECT 'a\x00b'",
	// Found by fuzzing: the oracle splits a continued string at a comment.
	"B''--\n''", " X'DEADBEEFCAFE'--sk_live_PLANTED00000\n\n'sk_live_PLANTED'",
	" X'DEADBEEFCAFE'--123-45-6789\n--0sk_live_PLANTED\n\n'000''sk_live_PLANTED'",
	// Found by fuzzing: junk after a number runs from an _ or letter in it.
	".0 0. 0.00 0e000$00000000000000000000", "SELECT 1_000$, 1e5$, 1e+5$, 1.5_x, 1_0.5, 1.5e5_",
}

// TestPostgres compares scan with PostgreSQL's scanner on the seeds, whole
// and cut at every byte, and checks that redaction shows nothing the
// scanner reads as a constant or a comment (see leak).
func TestPostgres(t *testing.T) {
	seeds := postgresSeeds
	for _, c := range sqlCases {
		seeds = append(seeds, c.in)
	}
	for _, src := range seeds {
		for i := len(src); i >= 0; i-- {
			checkPostgres(t, src[:i])
		}
	}
}

// FuzzPostgres is TestPostgres on any text. A normal go test runs only its
// seeds (postgresSeeds, whole).
func FuzzPostgres(f *testing.F) {
	for _, s := range postgresSeeds {
		f.Add(s)
	}
	// Compile the oracle's module (seconds) before any input: the fuzzing
	// engine takes a worker slower than 10 s on one input for hung.
	pgScan(f, "SELECT 1")
	f.Fuzz(func(t *testing.T, src string) {
		if !utf8.ValidString(src) {
			t.Skip("query text from the server is valid UTF-8")
		}
		checkPostgres(t, src)
	})
}

// FuzzPostgresTokens is FuzzPostgres on the texts FuzzSQL builds: tokens
// of every kind, literals and comments holding secrets, glued or not.
func FuzzPostgresTokens(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed))
	}
	pgScan(f, "SELECT 1") // see FuzzPostgres
	f.Fuzz(func(t *testing.T, data []byte) {
		src := generate(data[:min(len(data), 512)])
		if !utf8.ValidString(src) {
			t.Skip("query text from the server is valid UTF-8")
		}
		checkPostgres(t, src)
	})
}

func checkPostgres(t *testing.T, src string) {
	t.Helper()
	if d := differ(t, src); d != "" {
		t.Errorf("scan(%q): %s", src, d)
	}
	if l := leak(t, src, 0); l != "" {
		t.Errorf("SQL(%q) = %q shows %s", src, SQL(src), l)
	}
}
