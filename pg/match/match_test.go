package match_test

import (
	"strings"
	"testing"

	"github.com/pgkill/pgkill/pg/match"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in, bare string
		want     match.Rules
		err      string
	}{
		{"", "user", nil, ""},
		{"rdsadmin, review_repl", "user", match.Rules{{User: "rdsadmin"}, {User: "review_repl"}}, ""},
		{" pg_dump ,backup-*,", "app", match.Rules{{App: "pg_dump"}, {App: "backup-*"}}, ""},
		{"user=backup app=pg_dump*, user=rdsadmin", "", match.Rules{{User: "backup", App: "pg_dump*"}, {User: "rdsadmin"}}, ""},
		{"User=x  Application=y", "", match.Rules{{User: "x", App: "y"}}, ""},
		{"rdsadmin", "", nil, "user=PATTERN or app=PATTERN"},
		{"user=a b", "user", nil, "user=PATTERN or app=PATTERN"},
		{"db=x", "", nil, `unknown key "db"`},
		{"user=", "", nil, "empty pattern"},
		{"user=a user=b", "", nil, "twice"},
		{"app=[", "", nil, "not a valid pattern"},
	}
	for _, tc := range tests {
		got, err := match.Parse(tc.in, tc.bare)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("Parse(%q)[%d] = %+v, want %+v", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

func TestMatch(t *testing.T) {
	rs, err := match.Parse("user=backup app=pg_dump*, user=rdsadmin, app=flyway?", "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, app string
		want      bool
	}{
		{"backup", "pg_dump", true},
		{"backup", "pg_dumpall", true},
		{"mallory", "pg_dump", false}, // the application name alone is not enough
		{"backup", "psql", false},
		{"rdsadmin", "", true},
		{"x", "flyway1", true},
		{"x", "flyway", false},
		{" rdsadmin", "", false},
	}
	for _, tc := range tests {
		if _, got := rs.Match(tc.user, tc.app); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.user, tc.app, got, tc.want)
		}
	}
	if r := (match.Rule{User: "b", App: "p*"}); r.String() != "user=b app=p*" || r.AppOnly() {
		t.Errorf("String/AppOnly of %+v", r)
	}
}

func TestList(t *testing.T) {
	got := match.List(" U1, ,S2 ,")
	if strings.Join(got, "|") != "U1|S2" {
		t.Errorf("List = %q", got)
	}
}
