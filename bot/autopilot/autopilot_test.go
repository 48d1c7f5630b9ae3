package autopilot_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/pg"
)

// parse reads an autopilot: section and returns the rules and every
// problem, each with its line.
func parse(t *testing.T, src string) ([]autopilot.Rule, []string) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	var errs []string
	rules := autopilot.Parse(doc.Content[0].Content[1], func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, "line "+itoa(n.Line)+": "+sprintf(format, args...))
	})
	return rules, errs
}

func TestParseDefaults(t *testing.T) {
	rules, errs := parse(t, `
autopilot:
  - name: idle-blockers
    targets: [prod, orders-*]
    match:
      state: idle in transaction
      duration: 10m
      blocking: 5
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r := rules[0]
	want := autopilot.Rule{Name: "idle-blockers", Line: 3, Targets: []string{"prod", "orders-*"}, State: pg.StateIdleInTransaction,
		Duration: 10 * time.Minute, Blocking: 5, Action: autopilot.Terminate, Countdown: time.Minute, Mode: autopilot.DryRun, Limit: 3, Window: time.Hour}
	if r.Name != want.Name || r.Line != want.Line || strings.Join(r.Targets, ",") != "prod,orders-*" || r.State != want.State ||
		r.Duration != want.Duration || r.Blocking != want.Blocking || r.Action != want.Action || r.Countdown != want.Countdown ||
		r.Mode != want.Mode || r.Limit != want.Limit || r.Window != want.Window {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
}

func TestParseRefusesWithTheLine(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"not a list", "autopilot: {a: 1}", "line 1: autopilot: is a list of rules"},
		{"no name", "autopilot:\n  - match: {duration: 1m}", "line 2: a rule needs a name:"},
		{"bad name", "autopilot:\n  - name: Bad Name\n    match: {duration: 1m}", `line 2: name: "Bad Name" must be lower-case`},
		{"no match", "autopilot:\n  - name: a", `line 2: rule "a" needs a match:`},
		{"no time condition", "autopilot:\n  - name: a\n    match: {user: etl}", `rule "a" needs a duration:, transaction_age:, blocking: or waiting:`},
		{"unknown key", "autopilot:\n  - name: a\n    match: {duration: 1m}\n    acton: cancel", `line 4: unknown key "acton"`},
		{"unknown condition", "autopilot:\n  - name: a\n    match: {duraton: 1m}", `line 3: unknown condition "duraton"`},
		{"bad action", "autopilot:\n  - name: a\n    match: {duration: 1m}\n    action: kill", `line 4: action: "kill" is not cancel, terminate`},
		{"bad mode", "autopilot:\n  - name: a\n    match: {duration: 1m}\n    mode: yes", `line 4: mode: "yes" is not dry-run or act`},
		{"bad duration", "autopilot:\n  - name: a\n    match: {duration: ten}", `line 3: "ten" is not a positive duration`},
		{"zero duration", "autopilot:\n  - name: a\n    match: {duration: 0s}", `"0s" is not a positive duration`},
		{"bad limit", "autopilot:\n  - name: a\n    match: {duration: 1m}\n    limit: lots", `line 4: limit: "lots" must read like 5 per 1h`},
		{"zero limit", "autopilot:\n  - name: a\n    match: {duration: 1m}\n    limit: 0 per 1h", `limit: "0 per 1h"`},
		{"long window", "autopilot:\n  - name: a\n    match: {duration: 1m}\n    limit: 5 per 48h", "the window is at most 24h"},
		{"bad blocking", "autopilot:\n  - name: a\n    match: {blocking: 0}", `blocking: "0" is not a whole number of at least 1`},
		{"bad state", "autopilot:\n  - name: a\n    match: {duration: 1m, state: sleeping}", `state must be one of`},
		{"every state", "autopilot:\n  - name: a\n    match: {duration: 1m, state: all}", `a rule names one state`},
		{"bad pattern", "autopilot:\n  - name: a\n    match: {duration: 1m, user: '[x'}", "line 3: user:"},
		{"escalate needed", "autopilot:\n  - name: a\n    match: {duration: 1m}\n    action: cancel-then-terminate", "needs escalate_after:"},
		{"cancel idle", "autopilot:\n  - name: a\n    match: {duration: 1m, state: idle in transaction}\n    action: cancel", "cancel does nothing to a session idle in a transaction"},
		{"twice", "autopilot:\n  - name: a\n    match: {duration: 1m}\n  - name: a\n    match: {duration: 2m}", `line 4: rule "a" is declared twice (first at line 2)`},
		{"empty targets", "autopilot:\n  - name: a\n    targets: []\n    match: {duration: 1m}", "targets: lists target names"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, errs := parse(t, c.src)
			if !strings.Contains(strings.Join(errs, "\n"), c.want) {
				t.Fatalf("errors %q, want one containing %q", errs, c.want)
			}
		})
	}
}

func backend(mod func(*pg.Backend)) pg.Backend {
	b := pg.Backend{Identity: pg.Identity{Target: "prod", PID: 42}, BackendType: "client backend", State: pg.StateActive,
		User: "etl", Application: "nightly", Database: "shop", Duration: 20 * time.Minute, XactAge: 20 * time.Minute}
	if mod != nil {
		mod(&b)
	}
	return b
}

func TestMatch(t *testing.T) {
	long := autopilot.Rule{Name: "long", Duration: 10 * time.Minute}
	for _, c := range []struct {
		name string
		r    autopilot.Rule
		b    pg.Backend
		want bool
	}{
		{"long enough", long, backend(nil), true},
		{"too short", long, backend(func(b *pg.Backend) { b.Duration = 9 * time.Minute }), false},
		{"protected", long, backend(func(b *pg.Backend) { b.Protected = "superuser" }), false},
		{"not a client", long, backend(func(b *pg.Backend) { b.BackendType = "autovacuum worker" }), false},
		{"user pattern", autopilot.Rule{Duration: time.Minute, User: "etl*"}, backend(nil), true},
		{"user pattern misses", autopilot.Rule{Duration: time.Minute, User: "app*"}, backend(nil), false},
		{"app", autopilot.Rule{Duration: time.Minute, App: "psql"}, backend(nil), false},
		{"database", autopilot.Rule{Duration: time.Minute, Database: "shop"}, backend(nil), true},
		{"idle wanted, active", autopilot.Rule{Duration: time.Minute, State: pg.StateIdleInTransaction}, backend(nil), false},
		{"idle wanted, aborted counts", autopilot.Rule{Duration: time.Minute, State: pg.StateIdleInTransaction},
			backend(func(b *pg.Backend) { b.State = pg.StateIdleInTxAborted }), true},
		{"active wanted, idle", autopilot.Rule{Duration: time.Minute, State: pg.StateActive},
			backend(func(b *pg.Backend) { b.State = pg.StateIdleInTransaction }), false},
		{"transaction age", autopilot.Rule{XactAge: 30 * time.Minute}, backend(nil), false},
		{"root blocker", autopilot.Rule{Blocking: 5}, backend(func(b *pg.Backend) { b.Blocking, b.BlockingTotal = 2, 7 }), true},
		{"too few behind it", autopilot.Rule{Blocking: 8}, backend(func(b *pg.Backend) { b.Blocking, b.BlockingTotal = 2, 7 }), false},
		{"blocks but waits itself", autopilot.Rule{Blocking: 5},
			backend(func(b *pg.Backend) { b.Blocking, b.BlockingTotal, b.BlockedBy = 2, 7, []int32{9} }), false},
		{"a likely root is a guess", autopilot.Rule{Blocking: 1}, backend(func(b *pg.Backend) { b.LikelyRoot = true }), false},
		{"waiting on a lock", autopilot.Rule{Waiting: time.Minute}, backend(func(b *pg.Backend) { b.WaitEventType = "Lock" }), true},
		{"waiting on io", autopilot.Rule{Waiting: time.Minute}, backend(func(b *pg.Backend) { b.WaitEventType = "IO" }), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.r.Match(c.b); got != c.want {
				t.Fatalf("Match = %v, want %v", got, c.want)
			}
		})
	}
}

func TestEvaluateAndThreshold(t *testing.T) {
	rules := []autopilot.Rule{
		{Name: "prod-only", Targets: []string{"prod"}, Duration: 10 * time.Minute},
		{Name: "stage", Targets: []string{"stage-*"}, Duration: 2 * time.Minute},
		{Name: "waiters", Waiting: 30 * time.Second},
	}
	l := pg.Listing{Target: "prod", Backends: []pg.Backend{backend(nil), backend(func(b *pg.Backend) { b.PID, b.Duration = 43, time.Minute })}}
	got := autopilot.Evaluate(rules, l)
	if len(got) != 1 || got[0].Rule.Name != "prod-only" || got[0].Backend.PID != 42 {
		t.Fatalf("Evaluate = %+v", got)
	}
	for _, c := range []struct {
		target string
		want   time.Duration
		any    bool
	}{{"prod", 30 * time.Second, true}, {"stage-1", 30 * time.Second, true}} {
		if d, ok := autopilot.Threshold(rules, c.target); d != c.want || ok != c.any {
			t.Errorf("Threshold(%s) = %s, %v", c.target, d, ok)
		}
	}
	if _, ok := autopilot.Threshold(rules[:2], "other"); ok {
		t.Error("no rule covers other")
	}
}

func TestStopped(t *testing.T) {
	ps := []pg.PauseRow{{Scope: autopilot.TargetScope("prod")}, {Scope: autopilot.BreakerScope("long", "stage")}}
	for _, c := range []struct {
		rule, target string
		want         bool
	}{{"long", "prod", true}, {"other", "prod", true}, {"long", "stage", true}, {"other", "stage", false}, {"long", "dev", false}} {
		if _, got := autopilot.Stopped(ps, c.rule, c.target); got != c.want {
			t.Errorf("Stopped(%s, %s) = %v", c.rule, c.target, got)
		}
	}
	if _, got := autopilot.Stopped(append(ps, pg.PauseRow{Scope: autopilot.All}), "x", "dev"); !got {
		t.Error("a pause of every target stops every rule")
	}
}

func itoa(n int) string                    { return strconv.Itoa(n) }
func sprintf(f string, args ...any) string { return fmt.Sprintf(f, args...) }

// BenchmarkEvaluate is the autopilot's cost per poll: five rules over a
// listing of 1,000 sessions (docs/benchmarks.md).
func BenchmarkEvaluate(b *testing.B) {
	rules := []autopilot.Rule{
		{Name: "idle-blockers", State: pg.StateIdleInTransaction, Duration: 10 * time.Minute, Blocking: 5},
		{Name: "etl", Targets: []string{"prod", "orders-*"}, User: "etl*", Duration: 30 * time.Minute},
		{Name: "reports", App: "metabase*", Database: "shop", Duration: 15 * time.Minute},
		{Name: "old-xact", XactAge: time.Hour},
		{Name: "waiters", Waiting: 2 * time.Minute},
	}
	l := pg.Listing{Target: "orders-eu"}
	for i := range 1000 {
		l.Backends = append(l.Backends, backend(func(x *pg.Backend) {
			x.PID = int32(1000 + i)
			x.Duration = time.Duration(i) * time.Second
			x.User = []string{"etl_nightly", "app", "metabase"}[i%3]
			if i%7 == 0 {
				x.State, x.Blocking, x.BlockingTotal = pg.StateIdleInTransaction, 1, 6
			}
		}))
	}
	var n int
	b.ReportAllocs()
	for b.Loop() {
		n = len(autopilot.Evaluate(rules, l))
	}
	b.ReportMetric(float64(n), "firings")
}
