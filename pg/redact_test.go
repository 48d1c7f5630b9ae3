package pg_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg"
)

// The cases the issue showed leaking, and their neighbours: every error
// about a target, and Redact of the raw text, keep the password out.
func TestSecretsInMalformedTargets(t *testing.T) {
	for _, tc := range []struct{ spec, dbURL string }{
		{"prod=postgres://pgkill:Hunter2,xyzzy@127.0.0.1/db", ""},
		{"prod=postgres://pgkill:Hunter2,xyzzy@127.0.0.1:notaport/db", ""},
		{"prod=postgres://pgkill:Hunter2,stage=xyzzy@127.0.0.1/db", ""},
		{"prod=postgres://pgkill:Hunter2@xyzzy@127.0.0.1/db", ""},
		{"", "postgres://pgkill:Hunter2@xyzzy@127.0.0.1/db"},
		{"prod=host=h password=Hunter2,xyzzy", ""},
		{"prod=host=h password='Hunter2,stage=xyzzy' user=u", ""},
		{"prod=host=h password='Hunter2 xyzzy", ""},
		{"prod=postgres://pgkill:Hunter2 xyzzy@127.0.0.1/db", ""},
		{"postgres://pgkill:Hunter2xyzzy@127.0.0.1/db", ""},
		{"prod=postgres://pgkill:12345/Hunter2xyzzy@127.0.0.1/db", ""},
	} {
		_, err := pg.ParseTargets(tc.spec, tc.dbURL)
		text := pg.Redact(tc.spec + " " + tc.dbURL)
		if err != nil {
			text += " " + err.Error()
		}
		for _, piece := range []string{"Hunter2", "xyzzy"} {
			if strings.Contains(text, piece) {
				t.Errorf("%q: %q shown: %s", tc.spec+tc.dbURL, piece, text)
			}
		}
	}
}

// A forgotten "name=" after a comma is not swallowed into the DSN before it.
func TestTargetsEntryWithoutName(t *testing.T) {
	_, err := pg.ParseTargets("a=postgres://u:p@h/db,prod", "")
	if err == nil || !strings.Contains(err.Error(), `its database name holds a comma`) {
		t.Errorf("err = %v", err)
	}
}

// A comma or @ in a password, written as the README says, parses.
func TestTargetsWithCommaInPassword(t *testing.T) {
	specs, err := pg.ParseTargets("prod=postgres://u:a%2Cb%40c@h/db,kv=host=h password='x,y=z' user=u, multi=postgres://u:p,q@h1,h2/db", "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "prod kv multi" {
		t.Errorf("names = %s", got)
	}
}

// FuzzSecrets feeds DSN-like text of several shapes with a password made of
// random bytes between two markers, and checks that neither marker (one
// ends every piece a comma or @ could cut the password into, but the
// middle) nor a long middle piece appears in any error or in Redact's
// output. go test ./pg -fuzz FuzzSecrets -fuzztime 1m
func FuzzSecrets(f *testing.F) {
	for _, s := range []string{"Hunter2,xyz", "a@b", "x,prod=y", "it's", "p w", "a/b:c@d,e", "'", `\`, "%zz", "a=b c=d", "?sslmode=disable"} {
		for shape := range uint8(6) {
			f.Add(s, shape)
		}
	}
	f.Fuzz(func(t *testing.T, middle string, shape uint8) {
		const head, tail = "S3cRhead", "TaIl9end"
		pw := head + middle + tail
		var spec, dbURL string
		switch shape % 6 {
		case 0:
			spec = "prod=postgres://pgkill:" + pw + "@127.0.0.1:5432/db,stage=postgres://h/db"
		case 1:
			dbURL = "postgres://pgkill:" + pw + "@127.0.0.1/db?sslmode=disable"
		case 2: // keyword/value, unquoted: the value ends at a space, as libpq reads it
			pw = head + strings.Map(func(r rune) rune {
				if r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == '\'' || r == '\\' {
					return 'x'
				}
				return r
			}, middle) + tail
			spec = "prod=host=127.0.0.1 user=pgkill password=" + pw + " dbname=db"
		case 3: // keyword/value, quoted
			q := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
			spec = "prod=host=h password='" + q + "' user=u,b=postgres://h/db"
		case 4:
			spec = "prod=postgres://pgkill:" + pw + "@xyz@127.0.0.1/db"
		case 5:
			spec = "a=postgres://h/db, prod=postgresql://pgkill:" + pw + "@[::1]:5432,h2/db?x=1"
		}
		if strings.ContainsAny(middle, "\n\r") && shape%6 != 2 {
			return // a DSN is one line: a newline ends the setting's text
		}
		text := pg.Redact(spec + " " + dbURL)
		specs, err := pg.ParseTargets(spec, dbURL)
		if err != nil {
			text += "\n" + err.Error()
		}
		// What connection errors print of an accepted DSN: host, port, user
		// and database ("failed to connect to `user=… database=…`: host…").
		for _, s := range specs {
			if cfg, err := pgx.ParseConfig(s.DSN); err == nil {
				text += fmt.Sprintf("\n%s:%d user=%s database=%s", cfg.Host, cfg.Port, cfg.User, cfg.Database)
				for _, fb := range cfg.Fallbacks {
					text += fmt.Sprintf(" %s:%d", fb.Host, fb.Port)
				}
			}
		}
		for _, piece := range pieces(pw, head, tail) {
			if strings.Contains(text, piece) {
				t.Fatalf("password piece %q shown:\n%s", piece, text)
			}
		}
	})
}

// pieces are what must never be shown: both markers, and any piece of the
// password between separators that is long enough not to occur by chance.
func pieces(pw, head, tail string) []string {
	out := []string{head, tail}
	for _, p := range strings.FieldsFunc(pw, func(r rune) bool { return strings.ContainsRune(",@/:?=& '\\%", r) }) {
		if len(p) >= 12 && !strings.Contains(p, head) && !strings.Contains(p, tail) {
			out = append(out, p)
		}
	}
	return out
}
