package match_test

import (
	"path"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgkill/pgkill/pg/match"
)

func TestPattern(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"", "anything/at all", true},
		{"pg_dump*", "pg_dump", true},
		{"pg_dump*", "pg_dumpall", true},
		{"pg_dump*", "PG_DUMP", false}, // case counts
		{"pg_dump*", "pg_dump/x", false},
		{"*", "", true},
		{"a?c", "abc", true},
		{"a?c", "a/c", false},
		{"a?c", "aéc", true}, // one character, not one byte
		{"[a-c]x", "bx", true},
		{"[^a-c]x", "dx", true},
		{"[^a-c]x", "/x", true}, // a negated class takes '/'
		{"[\\]]", "]", true},
		{"a\\*", "a*", true},
		{"a\\*", "ab", false},
		{"[z-a]", "m", false},
		{"[^z-a]", "m", true},
		// Where path.Match departs from its grammar (see pattern):
		{"*[^a]*b", "c/b", true}, // * = c, [^a] = /, * = "", b
		{"*[^é]x", "éx", false},  // [^é] has no character to match but é
	}
	for _, tc := range tests {
		if got := match.Pattern(tc.p, tc.s); got != tc.want {
			t.Errorf("Pattern(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
		if got := goRegexp(t, tc.p).MatchString(tc.s); got != tc.want {
			t.Errorf("Regexp(%q) on %q = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

// FuzzPattern checks that CheckPattern accepts exactly what path.Match
// does; that Pattern agrees with path.Match on ASCII names without '/'
// (where path.Match follows its grammar); and that Regexp, read by Go's
// regexp, agrees with Pattern on any name PostgreSQL can hold.
func FuzzPattern(f *testing.F) {
	for _, seed := range [][2]string{
		{"pg_dump*", "pg_dumpall"}, {"*[^a]*b", "c/b"}, {"[\\]-\\^]?", "^x"}, {"a\\", "a"}, {"[]a]", "a"},
		{"[^", ""}, {"[a-", "a"}, {"*.*", "a.b"}, {"(a|b)+$", "(a|b)+$"}, {"[!-/]", "-"}, {"é*[é-ê]", "éê"},
		{"[z-a]*", ""}, {"x{2}", "x{2}"}, {"\\a\\1", "a1"}, {"*?*?*", "ab/"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		_, pathErr := path.Match(p, "")
		err := match.CheckPattern(p)
		if p != "" && (err == nil) != (pathErr == nil) {
			t.Fatalf("CheckPattern(%q) = %v, path.Match says %v", p, err, pathErr)
		}
		if err != nil {
			return
		}
		got := match.Pattern(p, s)
		if ascii(s) && !strings.Contains(s, "/") {
			if want, _ := path.Match(p, s); got != want {
				t.Errorf("Pattern(%q, %q) = %v, path.Match says %v", p, s, got, want)
			}
		}
		if utf8.ValidString(s) && !strings.Contains(s, "\x00") {
			if re := goRegexp(t, p); re.MatchString(s) != got {
				t.Errorf("Regexp(%q) = %q on %q: %v, Pattern says %v", p, re, s, !got, got)
			}
		}
	})
}

func goRegexp(t testing.TB, p string) *regexp.Regexp {
	t.Helper()
	src, err := match.Regexp(p)
	if err != nil {
		t.Fatal(err)
	}
	re, err := regexp.Compile(src)
	if err != nil {
		t.Fatalf("Regexp(%q) = %q: %v", p, src, err)
	}
	return re
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
