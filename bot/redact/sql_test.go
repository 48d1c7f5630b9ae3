package redact

import (
	"strings"
	"testing"
)

// sqlCases are the cases SQL must get right, whole and cut short. secrets
// are what must never reach the output, whole or in part.
var sqlCases = []struct {
	name    string
	in      string
	want    string
	secrets []string
}{
	{"Email", `SELECT id FROM users WHERE email = 'alice@example.com'`,
		`SELECT id FROM users WHERE email = ?`, []string{"alice@example.com"}},
	{"Token", `UPDATE keys SET v = 'sk_live_4eC39HqLyjWDarjtT1zdp7dc' WHERE id = 7`,
		`UPDATE keys SET v = ? WHERE id = ?`, []string{"sk_live_4eC39HqLyjWDarjtT1zdp7dc"}},
	{"CardNumber", `INSERT INTO cards (pan, cvc) VALUES ('4111 1111 1111 1111', 737)`,
		`INSERT INTO cards (pan, cvc) VALUES (?, ?)`, []string{"4111 1111 1111 1111"}},
	{"BareCardNumber", `SELECT * FROM cards WHERE pan = 4111111111111111`,
		`SELECT * FROM cards WHERE pan = ?`, []string{"4111111111111111"}},
	{"SSNInBlockComment", `SELECT 1 /* ssn='123-45-6789' api_key='sk_live_blockcomment' */ FROM t`,
		`SELECT ? FROM t`, []string{"123-45-6789", "sk_live_blockcomment"}},
	{"LineComment", "SELECT a -- email bob@example.org\nFROM t",
		"SELECT a\nFROM t", []string{"bob@example.org"}},
	{"LineCommentAtEnd", "SELECT a FROM t -- sk_live_linecomment",
		"SELECT a FROM t", []string{"sk_live_linecomment"}},
	{"LineCommentEndsAtCR", "SELECT 1 -- note\r'x\nsk_live_aftercr'",
		"SELECT ?\r?", []string{"sk_live_aftercr"}},
	{"NestedComment", `SELECT 1 /* outer /* inner */ sk_live_nestedcomment */, 2`,
		`SELECT ? , ?`, []string{"sk_live_nestedcomment"}},
	{"CommentGluedToIdentifier", `SELECT col/* sk_live_glued */FROM t`,
		`SELECT col FROM t`, []string{"sk_live_glued"}},
	{"CommentGluedToOperator", "SELECT a=--sk_live_opcomment\n1",
		"SELECT a=\n?", []string{"sk_live_opcomment"}},
	{"CommentAfterJSONOperator", "SELECT a #-- sk_live_jsonop\n, b",
		"SELECT a #\n, b", []string{"sk_live_jsonop"}},
	{"CommentInsideOperator", `SELECT 1 */* sk_live_opcomment */ 2, a+/*sk_live_plus*/-3`,
		`SELECT ? * ?, a+ -?`, []string{"sk_live_opcomment", "sk_live_plus"}},
	{"DollarQuoted", `SELECT $$sk_live_dollar$$, $tag$ it's $$ alice@example.com $tag$`,
		`SELECT ?, ?`, []string{"sk_live_dollar", "alice@example.com"}},
	{"EscapeString", `SELECT E'\'sk_live_escape', e'\\', x FROM t`,
		`SELECT ?, ?, x FROM t`, []string{"sk_live_escape"}},
	{"EscapeStringQuoteAtEnd", `SELECT E'it\'s sk_live_esc2\'', 'x'`,
		`SELECT ?, ?`, []string{"sk_live_esc2"}},
	{"UnicodeString", `SELECT U&'d\0061t\+000061 sk_live_unicode', u&'x' UESCAPE '!'`,
		`SELECT ?, ? UESCAPE ?`, []string{"sk_live_unicode"}},
	{"BitAndHexStrings", `SELECT B'0101', X'DEADBEEFCAFE', b'1', x'ff'`,
		`SELECT ?, ?, ?, ?`, []string{"0101", "DEADBEEFCAFE"}},
	{"NationalString", `SELECT N'sk_live_national', n'sk_live_lower'`,
		`SELECT ?, ?`, []string{"sk_live_national", "sk_live_lower"}},
	{"Numbers", `SELECT 42, 3.14, .5, 1e10, 2.5E-3, 0x1F, 0b1010, 0o17, 1_000_000, 1., .5e3, 0x_FF`,
		`SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?`, []string{"3.14", "1010", "1_000"}},
	{"Range", `SELECT a[1..10], 2..3`,
		`SELECT a[?..?], ?..?`, nil},
	{"DigitsGluedToOperators", `SELECT a/4111111111111111, b!12345678, c#98765432, @55667788, t.99887766, x?44556677, y$2`,
		`SELECT a/?, b!?, c#?, @?, t?, x??, y$2`, []string{"4111111111111111", "12345678", "98765432", "55667788", "99887766", "44556677"}},
	{"Signs", `SELECT -5, a-7, a - -9, f(x)+3, +8, a@-1, a!=-2`,
		`SELECT -?, a-?, a - -?, f(x)+?, +?, a@-?, a!=-?`, nil},
	{"Casts", `SELECT '2024-01-01'::date, CAST('42' AS int), interval '1 day', date '1999-12-31'`,
		`SELECT ?::date, CAST(? AS int), interval ?, date ?`, []string{"2024-01-01", "1999-12-31"}},
	{"InList", `SELECT * FROM t WHERE id IN (101, 202, 303) AND s IN ('alice@example.com', 'bob@example.org')`,
		`SELECT * FROM t WHERE id IN (?, ?, ?) AND s IN (?, ?)`, []string{"alice@example.com", "bob@example.org"}},
	{"QuotedIdentifiers", `SELECT "weird ""name""", "it's", "/* x */", "a"."b", U&"d!0061t" UESCAPE '!' FROM "s"."t" WHERE "c" = $1`,
		`SELECT "weird ""name""", "it's", "/* x */", "a"."b", U&"d!0061t" UESCAPE ? FROM "s"."t" WHERE "c" = $1`, nil},
	{"QuotedIdentifierThenLiteral", `SELECT "a""b" FROM t WHERE x = 'sk_live_afterident'`,
		`SELECT "a""b" FROM t WHERE x = ?`, []string{"sk_live_afterident"}},
	{"IdentifierGluedToQuotedIdentifier", `SELECT a"x ' y" 'sk_live_alias'`,
		`SELECT a"x ' y" ?`, []string{"sk_live_alias"}},
	{"IdentifiersHoldDollars", `SELECT a$b, x$$y$$, é$$z$$ FROM t`,
		`SELECT a$b, x$$y$$, é$$z$$ FROM t`, nil},
	{"KeepsParametersAndKeywords", `SELECT count(*) FROM t WHERE a = $1 AND b IS NULL AND c = true`,
		`SELECT count(*) FROM t WHERE a = $1 AND b IS NULL AND c = true`, nil},
	{"DoubledQuoteInString", `SELECT 'it''s sk_live_doubled', 'x'`,
		`SELECT ?, ?`, []string{"sk_live_doubled"}},
	{"BackslashQuoteHidesRest", `SELECT 'a\'' , 'sk_live_nonstandard'`,
		`SELECT ?`, []string{"sk_live_nonstandard"}},
	{"UnterminatedString", `SELECT * FROM t WHERE token = 'sk_live_unterminated`,
		`SELECT * FROM t WHERE token = ?`, []string{"sk_live_unterminated"}},
	{"UnterminatedEscapeString", `SELECT E'abc\'sk_live_unterminated2`,
		`SELECT ?`, []string{"sk_live_unterminated2"}},
	{"UnterminatedComment", `SELECT a FROM t /* api_key='sk_live_opencomment`,
		`SELECT a FROM t ?`, []string{"sk_live_opencomment"}},
	{"UnterminatedNestedComment", `SELECT a /* /* */ sk_live_opennested`,
		`SELECT a ?`, []string{"sk_live_opennested"}},
	{"UnterminatedDollarQuote", `SELECT $tag$ sk_live_opendollar $tag`,
		`SELECT ?`, []string{"sk_live_opendollar"}},
	{"UnterminatedQuotedIdentifier", `SELECT "col sk_live_openident`,
		`SELECT ?`, []string{"sk_live_openident"}},
	{"TrailingJunkHidesRest", `SELECT 123abc, 'sk_live_junk'`,
		`SELECT ?`, []string{"sk_live_junk"}},
	{"Unicode", `SELECT 'mañana – sk_live_ünïcode' AS "naïve"`,
		`SELECT ? AS "naïve"`, []string{"sk_live_ünïcode"}},
	{"Multiline", "INSERT INTO audit (who, what)\n\tVALUES ('carol@example.net',\n\t\t'sk_live_multi')",
		"INSERT INTO audit (who, what)\n\tVALUES (?,\n\t\t?)", []string{"carol@example.net", "sk_live_multi"}},
	{"StringContinuation", "SELECT 'sk_live_part1'\n'sk_live_part2', 2",
		"SELECT ?, ?", []string{"sk_live_part1", "sk_live_part2"}},
	{"Empty", ``, ``, nil},

	// Forms a generic SQL lexer reads otherwise than PostgreSQL does.
	{"DollarQuoteGluedToOperator", `SELECT attrs?$$sk_live_glued$$, t?$tag$sk_live_tagged$tag$ FROM t`,
		`SELECT attrs??, t?? FROM t`, []string{"sk_live_glued", "sk_live_tagged"}},
	{"DollarQuoteAfterOperators", `SELECT t.$$sk_live_dot$$, a#$$sk_live_hash$$, a!$$sk_live_bang$$, a@$$sk_live_at$$, a/$$sk_live_slash$$`,
		`SELECT t.?, a#?, a!?, a@?, a/?`, []string{"sk_live_dot", "sk_live_hash", "sk_live_bang", "sk_live_at", "sk_live_slash"}},
	{"DollarTagNonASCII", `SELECT f($ä$sk_live_tag1$ä$) AND b = $日本$sk_live_tag2$日本$, c`,
		`SELECT f(?) AND b = ?, c`, []string{"sk_live_tag1", "sk_live_tag2"}},
	{"DollarTagEndsAtItsOwnTag", `SELECT $ä$a$ä$ AS sk_visible, $$ $ä$ $$ AS x`,
		`SELECT ? AS sk_visible, ? AS x`, nil},
	{"ContinuationAcrossLineComment", "SELECT 'a' -- note\n  'sk_live_cont', 1",
		"SELECT ?, ?", []string{"sk_live_cont"}},
	{"EscapeContinuation", "SELECT E'a'\n'\\' sk_live_econt', 1",
		"SELECT ?, ?", []string{"sk_live_econt"}},
	{"BitStringContinuation", "SELECT B'01'\n'10', X'AB'\n  'CD', 1",
		"SELECT ?, ?, ?", nil},
	{"NoContinuationWithoutNewline", "SELECT 'a' 'sk_live_sameline', 1",
		"SELECT ? ?, ?", []string{"sk_live_sameline"}},

	// Values that are words: settings.
	{"SetValue", `SET app.secret = sk_live_setvalue`,
		`SET app.secret = ?`, []string{"sk_live_setvalue"}},
	{"SetValueList", `SET search_path TO sk_live_schema, "Sk_live_quoted", public; SELECT 1`,
		`SET search_path TO ?, ?, ?; SELECT ?`, []string{"sk_live_schema", "Sk_live_quoted"}},
	{"SetLocalSession", `SET LOCAL app.key TO sk_live_local; SET SESSION app.k2 = sk_live_session.part`,
		`SET LOCAL app.key TO ?; SET SESSION app.k2 = ?`, []string{"sk_live_local", "sk_live_session", ".part"}},
	{"SetSpecial", `SET TIME ZONE sk_live_tz; SET ROLE sk_live_role; SET SESSION AUTHORIZATION sk_live_auth; SET NAMES sk_live_names`,
		`SET TIME ZONE ?; SET ROLE ?; SET SESSION AUTHORIZATION ?; SET NAMES ?`, []string{"sk_live_tz", "sk_live_role", "sk_live_auth", "sk_live_names"}},
	{"SetKeepsTransaction", `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET CONSTRAINTS ALL DEFERRED`,
		`SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET CONSTRAINTS ALL DEFERRED`, nil},
	{"AlterRoleSet", `ALTER ROLE app IN DATABASE db SET app.key = sk_live_role; ALTER USER u SET x TO -5`,
		`ALTER ROLE app IN DATABASE db SET app.key = ?; ALTER USER u SET x TO ?`, []string{"sk_live_role"}},
	{"AlterDatabaseSystemSet", `ALTER DATABASE db SET app.key TO sk_live_db; ALTER SYSTEM SET app.k = sk_live_sys`,
		`ALTER DATABASE db SET app.key TO ?; ALTER SYSTEM SET app.k = ?`, []string{"sk_live_db", "sk_live_sys"}},
	{"UpdateSetKeepsColumns", `UPDATE t SET a = b, c = 'sk_live_upd' WHERE d = e`,
		`UPDATE t SET a = b, c = ? WHERE d = e`, []string{"sk_live_upd"}},
	{"AlterTableSetKept", `ALTER TABLE t ALTER COLUMN c SET DEFAULT 'sk_live_default'; ALTER DATABASE d RENAME TO e`,
		`ALTER TABLE t ALTER COLUMN c SET DEFAULT ?; ALTER DATABASE d RENAME TO e`, []string{"sk_live_default"}},
	{"SetConfig", `SELECT set_config('app.key', 'sk_live_cfgvalue', false)`,
		`SELECT set_config(?, ?, false)`, []string{"sk_live_cfgvalue"}},
	{"FunctionSetClause", `CREATE FUNCTION f() RETURNS int SET search_path = sk_live_fn, pg_temp LANGUAGE sql AS $$ SELECT 1 $$; ALTER FUNCTION f() SET app.k TO sk_live_alter`,
		`CREATE FUNCTION f() RETURNS int SET search_path = ?, ? LANGUAGE sql AS $$ SELECT ? $$; ALTER FUNCTION f() SET app.k TO ?`, []string{"sk_live_fn", "sk_live_alter"}},

	// Bodies: redacted, not hidden whole.
	{"DollarQuotedFunc", `DO $func$ BEGIN PERFORM 'sk_live_fnbody'; END $func$`,
		`DO $func$ BEGIN PERFORM ?; END $func$`, []string{"sk_live_fnbody"}},
	{"DoBlock", "DO $$\nBEGIN\n  LOOP\n    PERFORM pg_sleep(1);\n    RAISE NOTICE 'sk_live_notice';\n  END LOOP;\nEND $$",
		"DO $$\nBEGIN\n  LOOP\n    PERFORM pg_sleep(?);\n    RAISE NOTICE ?;\n  END LOOP;\nEND $$", []string{"sk_live_notice"}},
	{"DoBlockQuoted", `DO 'BEGIN RAISE NOTICE ''sk_live_q''; SET app.k = sk_live_dov; END'; SELECT 1`,
		`DO 'BEGIN RAISE NOTICE ?; SET app.k = ?; END'; SELECT ?`, []string{"sk_live_q", "sk_live_dov"}},
	{"DoBlockLanguage", `DO LANGUAGE plpgsql $$BEGIN PERFORM 1; END$$; DO $$x = "sk_live_py"$$ LANGUAGE plpython3u`,
		`DO LANGUAGE plpgsql $$BEGIN PERFORM ?; END$$; DO ? LANGUAGE plpython3u`, []string{"sk_live_py"}},
	{"DoBlockLanguageCutOff", `DO $$x = "sk_live_cut"$$`,
		`DO ?`, []string{"sk_live_cut"}},
	{"DoBlockBadBody", `DO $$BEGIN RAISE NOTICE 'sk_live_open; END$$; SELECT 'sk_live_after'`,
		`DO $$BEGIN RAISE NOTICE ?$$; SELECT ?`, []string{"sk_live_open", "sk_live_after"}},
	{"DoBlockNested", `DO $o$ BEGIN EXECUTE $i$ SELECT 'sk_live_inner' $i$; CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $f$ SELECT 'sk_live_nested' $f$; END $o$`,
		`DO $o$ BEGIN EXECUTE ?; CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $f$ SELECT ? $f$; END $o$`, []string{"sk_live_inner", "sk_live_nested"}},
	{"FunctionBody", `CREATE OR REPLACE FUNCTION f(a text DEFAULT 'sk_live_def') RETURNS int AS $body$ BEGIN RETURN length(a || 'sk_live_inproc'); END $body$ LANGUAGE plpgsql`,
		`CREATE OR REPLACE FUNCTION f(a text DEFAULT ?) RETURNS int AS $body$ BEGIN RETURN length(a || ?); END $body$ LANGUAGE plpgsql`, []string{"sk_live_def", "sk_live_inproc"}},
	{"FunctionBodyOtherLanguage", `CREATE FUNCTION f() RETURNS int AS $$ return "sk_live_prl" $$ LANGUAGE plperl; CREATE FUNCTION g() RETURNS int AS 'sk_live_obj', 'sym' LANGUAGE c`,
		`CREATE FUNCTION f() RETURNS int AS ? LANGUAGE plperl; CREATE FUNCTION g() RETURNS int AS ?, ? LANGUAGE c`, []string{"sk_live_prl", "sk_live_obj"}},
	{"FunctionBodyLanguageCutOff", `CREATE FUNCTION f() RETURNS int AS $$ return "sk_live_cut2" $$`,
		`CREATE FUNCTION f() RETURNS int AS ?`, []string{"sk_live_cut2"}},
}

func TestSQL(t *testing.T) {
	for _, c := range sqlCases {
		t.Run(c.name, func(t *testing.T) {
			if got := SQL(c.in); got != c.want {
				t.Errorf("SQL(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
		})
	}
}

// TestSQLTruncated cuts every case at every byte, as track_activity_query_size
// does: no part of a secret may survive.
func TestSQLTruncated(t *testing.T) {
	for _, c := range sqlCases {
		t.Run(c.name, func(t *testing.T) {
			for i := 0; i <= len(c.in); i++ {
				got := SQL(c.in[:i])
				if leak := leaked(got, c.secrets); leak != "" {
					t.Fatalf("SQL(%q) = %q shows %q", c.in[:i], got, leak)
				}
			}
		})
	}
}

// window is the shortest part of a secret a test looks for.
const window = 4

// leaked returns a part (window bytes or more) of a secret found in out.
func leaked(out string, secrets []string) string {
	for _, s := range secrets {
		if len(s) < window {
			if strings.Contains(out, s) {
				return s
			}
			continue
		}
		for i := 0; i+window <= len(s); i++ {
			if strings.Contains(out, s[i:i+window]) {
				return s[i : i+window]
			}
		}
	}
	return ""
}

func TestSQLLong(t *testing.T) {
	in := longQuery(64 << 10)
	got := SQL(in)
	if leak := leaked(got, []string{"sk_live_long"}); leak != "" {
		t.Fatalf("64 kB query shows %q", leak)
	}
	if !strings.HasPrefix(got, "SELECT id, email FROM users WHERE id IN (?, ?") {
		t.Fatalf("64 kB query lost its shape: %.80q", got)
	}
	for _, cut := range []int{len(in) / 3, len(in)/2 + 1, len(in) - 5} {
		if leak := leaked(SQL(in[:cut]), []string{"sk_live_long"}); leak != "" {
			t.Fatalf("64 kB query cut at %d shows %q", cut, leak)
		}
	}
}

// longQuery is a realistic query of about n bytes: a long IN list of
// strings and numbers with comments among them.
func longQuery(n int) string {
	var b strings.Builder
	b.WriteString("SELECT id, email FROM users WHERE id IN (")
	for i := 0; b.Len() < n-40; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		switch i % 4 {
		case 0:
			b.WriteString("12345")
		case 1:
			b.WriteString("'user.name@example.com'")
		case 2:
			b.WriteString("/* sk_live_long */ -42.5")
		case 3:
			b.WriteString("E'sk_live_long\\'s'")
		}
	}
	b.WriteString(") AND note = 'sk_live_long'")
	return b.String()
}

func TestFingerprint(t *testing.T) {
	a := Fingerprint("SELECT 'sk_live_fp'")
	if len(a) != 16 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("Fingerprint = %q, want 16 hex digits", a)
	}
	if a != Fingerprint("SELECT 'sk_live_fp'") {
		t.Fatal("Fingerprint differs for the same text")
	}
	if a == Fingerprint("SELECT 'sk_live_fq'") {
		t.Fatal("Fingerprint is the same for texts differing in a literal")
	}
	// sha256("") starts e3b0c44298fc1c14.
	if got := Fingerprint(""); got != "e3b0c44298fc1c14" {
		t.Fatalf(`Fingerprint("") = %q`, got)
	}
}
