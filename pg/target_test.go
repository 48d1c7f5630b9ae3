package pg_test

import (
	"strings"
	"testing"

	"github.com/pgkill/pgkill/pg"
)

func TestParseTargets(t *testing.T) {
	tests := []struct {
		spec, dbURL string
		want        []string // names
		err         string
	}{
		{"", "postgres://a@h/db", []string{"default"}, ""},
		{"", "", []string{"default"}, ""},
		{"prod=postgres://u:p@h/db, stage=postgres://h2/db", "", []string{"prod", "stage"}, ""},
		{"kv=host=h port=5432 user=u password=p", "", []string{"kv"}, ""},
		{"prod", "", nil, "is not name=postgres"},
		{"Prod=postgres://h/db", "", nil, "must match"},
		{"a=postgres://h/db,a=postgres://h2/db", "", nil, "used twice"},
		{"a=postgres://u:sekrit@h:notaport/db", "", nil, "invalid DSN"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := pg.ParseTargets(tc.spec, tc.dbURL)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "sekrit") {
					t.Errorf("password in error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range got {
				names = append(names, s.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Errorf("names = %v, want %v", names, tc.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := map[string]string{
		"postgres://user:s3cr%40t@host:5432/db": "postgres://user:xxxxx@host:5432/db",
		"host=h password=s3cret user=u":         "host=h password=xxxxx user=u",
		"host=h password='a b' user=u":          "host=h password=xxxxx user=u",
		"postgres://user@host/db":               "postgres://user@host/db",
	}
	for in, want := range tests {
		if got := pg.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
