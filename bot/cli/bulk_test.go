package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// cancel|terminate with filters and no pid acts on the set they select:
// refused without a filter, never signalled when a target could not be
// read, capped by PGKILL_BULK_MAX, counted after.
func TestBulk(t *testing.T) {
	root := backend(10, time.Second, "UPDATE t SET x = 1")
	root.Blocking, root.BlockingTotal = 1, 1
	idleTx := backend(11, time.Hour, "UPDATE t SET x = 2")
	idleTx.State = pg.StateIdleInTransaction
	protected := backend(12, time.Hour, "VACUUM")
	protected.Protected = "protected (user=rdsadmin)"
	set := []pg.Backend{backend(20, time.Minute, "SELECT 20"), root, idleTx, protected, backend(21, 2*time.Minute, "SELECT 21")}
	down := errors.New("dial tcp: connection refused")
	tests := []struct {
		name     string
		listings []pg.Listing
		outcome  map[int32]pg.Outcome
		verify   map[int32]pg.Verification
		max      int
		stdin    string
		args     []string
		code     int
		signals  string // pids signalled, in order
		say      []string
	}{
		{name: "no filter", args: []string{"cancel", "-y"}, code: ExitUsage,
			say: []string{"which sessions? Give pids (pgkill list shows them), or select a set with -target, -db, -user, -app or -state"}},
		{name: "only -min", args: []string{"terminate", "-min", "5m", "-y"}, code: ExitUsage, say: []string{"pgkill does not terminate every session of every target"}},
		{name: "filters and pids", args: []string{"cancel", "-app", "web", "10"}, code: ExitUsage, say: []string{"-app selects sessions by filter and cannot be combined with pids"}},
		{name: "bad state", args: []string{"cancel", "-state", "asleep"}, code: ExitUsage, say: []string{"state must be one of"}},
		{name: "a target down", listings: []pg.Listing{{Target: "prod", Backends: set}, {Target: "staging", Err: down}}, args: []string{"cancel", "-app", "web", "-y"},
			code: ExitUnreadable, say: []string{"staging: COULD NOT BE READ", "nothing signalled: cancel without pids needs every target it reads to answer"}},
		{name: "not confirmed", listings: []pg.Listing{{Target: "prod", Backends: set}}, args: []string{"cancel", "-app", "web"}, stdin: "n\n",
			code: ExitNothingDone, say: []string{"3 sessions: queries ≥ 1m on prod (app=web); left out: 1 idle in a transaction (cancel does nothing there), 1 not signallable (protected (user=rdsadmin))",
				"cancel these 3 sessions, each only if it still runs the statement listed? [y/N]", "not confirmed; nothing signalled"}},
		{name: "over the cap", listings: []pg.Listing{{Target: "prod", Backends: set}}, max: 2, args: []string{"cancel", "-app", "web", "-y"},
			code: ExitNothingDone, say: []string{"3 sessions match, more than one cancel may end (PGKILL_BULK_MAX=2)", "Nothing signalled."}},
		{name: "nothing matches", listings: []pg.Listing{{Target: "prod", Backends: []pg.Backend{idleTx}}}, args: []string{"cancel", "-target", "prod", "-y"},
			code: ExitNothingDone, say: []string{"no queries ≥ 1m on prod that can be canceled; left out: 1 idle in a transaction"}},
		{name: "all ended", listings: []pg.Listing{{Target: "prod", Backends: set}}, args: []string{"cancel", "-app", "web", "-y"},
			code: ExitOK, signals: "10 21 20", say: []string{"pid 10 on prod: ended", "ended 3, skipped 0", "still running 0, denied by PostgreSQL 0, failed 0"}},
		{name: "terminate takes idle in transaction", listings: []pg.Listing{{Target: "prod", Backends: set}}, args: []string{"terminate", "-app", "web", "-y"},
			outcome: map[int32]pg.Outcome{20: {Result: pg.Gone}},
			code:    ExitOK, signals: "10 11 21 20", say: []string{"ended 3, skipped 1", "left out: 1 not signallable"}},
		{name: "still running", listings: []pg.Listing{{Target: "prod", Backends: set}}, args: []string{"cancel", "-db", "orders"}, stdin: "y\n",
			verify: map[int32]pg.Verification{21: {State: pg.StateActive, After: time.Second}, 20: {State: pg.StateActive, After: time.Second}},
			code:   ExitStillRunning, signals: "10 21 20",
			say: []string{"ended 1, skipped 0, still running 2, denied by PostgreSQL 0, failed 0\n",
				"next: to end the 2 still running: pgkill terminate -target prod 21 20"}},
		{name: "denied", listings: []pg.Listing{{Target: "prod", Backends: set}}, args: []string{"cancel", "-user", "app", "-y"},
			outcome: map[int32]pg.Outcome{10: {Result: pg.Denied, Message: "permission denied", Fix: "GRANT pg_signal_backend"}, 20: {Result: pg.Denied}, 21: {Result: pg.Gone}},
			code:    ExitNothingDone, signals: "10 21 20", say: []string{"ended 0, skipped 1 (no longer running the listed statement: nothing sent), still running 0, denied by PostgreSQL 2", "denied by PostgreSQL 2", "fix: GRANT pg_signal_backend"}},
		{name: "protected since listed", listings: []pg.Listing{{Target: "prod", Backends: set}}, args: []string{"cancel", "-user", "app", "-y"},
			outcome: map[int32]pg.Outcome{21: {Result: pg.Protected, Message: `app=pg_dump* (user "app", application_name "pg_dump_x")`}},
			code:    ExitNothingDone, signals: "10 21 20", say: []string{
				`pid 21 on prod: nothing signalled: the session is protected now, though it was not when read: it matches app=pg_dump* (user "app", application_name "pg_dump_x")`,
				"ended 2, skipped 0, still running 0, denied by PostgreSQL 0, failed 0, 1 protected now, though not when listed (a protection rule matches them: nothing sent)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDB{names: []string{"prod", "staging"}, listings: tc.listings, outcome: tc.outcome, verify: tc.verify}
			r := runOpts(t, f, Options{MinDuration: time.Minute, VerifyTimeout: 10 * time.Second, BulkMax: tc.max}, tc.stdin, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			for _, s := range tc.say {
				if !strings.Contains(r.out+r.err, s) {
					t.Errorf("output lacks %q", s)
				}
			}
			var got []string
			for _, p := range f.signals {
				got = append(got, itoa(p))
			}
			if strings.Join(got, " ") != tc.signals {
				t.Errorf("signalled %v, want %q", got, tc.signals)
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", r.out, r.err)
			}
		})
	}
}
