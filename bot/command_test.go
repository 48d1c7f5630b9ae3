package bot

import (
	"strings"
	"testing"
	"time"
)

func TestParseCommand(t *testing.T) {
	targets := []string{"prod", "stage"}
	tests := []struct {
		text string
		want Query
		err  string
	}{
		{"", Query{Kind: KindList, Threshold: time.Minute}, ""},
		{"help", Query{Kind: KindHelp}, ""},
		{"targets", Query{Kind: KindTargets}, ""},
		{"doctor", Query{Kind: KindDoctor}, ""},
		{"doctor prod", Query{Kind: KindDoctor, Targets: []string{"prod"}}, ""},
		{"prod 30s", Query{Kind: KindList, Targets: []string{"prod"}, Threshold: 30 * time.Second, Args: "prod 30s"}, ""},
		{"  prod   stage 1h30m db=app user=etl app=x state=idle limit=5",
			Query{Kind: KindList, Targets: []string{"prod", "stage"}, Threshold: 90 * time.Minute, Limit: 5,
				Filters: "db=app user=etl app=x state=idle", Args: "prod stage 1h30m db=app user=etl app=x state=idle limit=5"}, ""},
		{"nope", Query{}, `unknown target or argument "nope"`},
		{"doctor nope", Query{}, "unknown target"},
		{"5 minutes", Query{}, "not a duration"},
		{"-5m", Query{}, "not a duration"},
		{"1m 2m", Query{}, "one duration"},
		{"color=red", Query{}, `unknown key "color"`},
		{"db=", Query{}, "needs a value"},
		{"limit=-3", Query{}, "limit must be"},
		{"limit=0", Query{}, "limit must be"},
		{"limit=many", Query{}, "limit must be"},
		{"state=sleeping", Query{}, "state must be"},
		{"help me", Query{}, "no arguments"},
		{strings.Repeat("prod ", 200), Query{}, "at most 500"},
		{"prod\x00", Query{}, "control character"},
		{"<@U123> & `rm -rf` 🚀", Query{}, "unknown target"},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			got, err := ParseCommand(tc.text, targets, time.Minute)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.Kind == KindList {
				tc.want.Filter.MinDuration = tc.want.Threshold
			}
			if got.Kind != tc.want.Kind || got.Threshold != tc.want.Threshold || got.Limit != tc.want.Limit ||
				strings.Join(got.Targets, ",") != strings.Join(tc.want.Targets, ",") || got.Filters != tc.want.Filters || got.Args != tc.want.Args {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"", "prod 30s db=x", "limit=3", "doctor prod", "1h2m3s", "state=all",
		"cancel ȺȺ reason=x", "terminate prod REASON=\"İ\"", "cancel app=x reason=", "terminate 0s user=etl limit=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		q, err := ParseCommand(text, []string{"prod"}, time.Minute)
		if err == nil && q.Kind == KindList && (q.Threshold < 0 || q.Limit < 0) {
			t.Errorf("%q parsed to %+v", text, q)
		}
	})
}
