package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
)

func TestListSaysWhatItCouldNotRead(t *testing.T) {
	down := errors.New("list down: failed to connect to `user=pgkill database=x`: dial tcp 127.0.0.1:1: connect: connection refused")
	tests := []struct {
		name     string
		listings []pg.Listing
		args     []string
		code     int
		say      []string
		never    []string
	}{
		{
			name:     "one target down, none listed",
			listings: []pg.Listing{{Target: "prod", Err: down}},
			args:     []string{"list"},
			code:     ExitUnreadable,
			say:      []string{"prod: COULD NOT BE READ: ", "connection refused", "nothing could be listed"},
			never:    []string{"no long-running", "no queries"},
		},
		{
			name:     "one down, one empty",
			listings: []pg.Listing{{Target: "prod"}, {Target: "staging", Err: down}},
			args:     []string{"list", "-min", "1m", "-db", "orders"},
			code:     ExitUnreadable,
			say:      []string{"staging: COULD NOT BE READ", "no queries ≥ 1m on prod (db=orders); staging could not be read"},
		},
		{
			name:     "all answered, empty",
			listings: []pg.Listing{{Target: "prod"}},
			args:     []string{"list", "-min", "90s", "-user", "etl*", "-state", "active", "-blocking"},
			code:     ExitOK,
			say:      []string{"no queries ≥ 1m30s on prod (user=etl*, state=active, blocking)"},
		},
		{
			name:     "hidden sessions are no all-clear",
			listings: []pg.Listing{{Target: "prod", Hidden: 2}},
			args:     []string{"list"},
			code:     ExitOK,
			say:      []string{"prod: 2 sessions of other roles hidden", "GRANT pg_read_all_stats", "pgkill doctor", "no queries ≥ 1m visible on prod; sessions hidden on prod"},
			never:    []string{"no queries ≥ 1m on prod\n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, &fakeDB{names: []string{"prod", "staging"}, listings: tc.listings}, "", tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", r.code, tc.code, r.out, r.err)
			}
			for _, s := range tc.say {
				if !strings.Contains(r.out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, r.out)
				}
			}
			for _, s := range tc.never {
				if strings.Contains(r.out, s) {
					t.Errorf("stdout says %q:\n%s", s, r.out)
				}
			}
		})
	}
}

func TestListOrderLimitWide(t *testing.T) {
	long := strings.Repeat("x", 100)
	root := backend(10, time.Second, "UPDATE t SET x = 1")
	root.Blocking, root.BlockingTotal = 1, 1
	waiter := backend(11, 50*time.Second, "UPDATE t SET x = 2")
	waiter.BlockedBy = []int32{10}
	f := &fakeDB{names: []string{"prod"}, listings: []pg.Listing{{Target: "prod", Backends: []pg.Backend{
		backend(30, time.Minute, "SELECT 30"), backend(20, time.Minute, "SELECT 20"), waiter, root, backend(40, 2*time.Minute, long),
	}}}}
	r := run(t, f, "", "list")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n")[1:] {
		got = append(got, strings.Fields(line)[1])
	}
	if want := "10 40 20 30 11"; strings.Join(got, " ") != want {
		t.Errorf("order = %v, want root blocker, then longest, ties by pid: %s\n%s", got, want, r.out)
	}
	if strings.Contains(r.out, long) {
		t.Errorf("query not cut without -wide:\n%s", r.out)
	}
	if r := run(t, f, "", "list", "-wide"); !strings.Contains(r.out, long) {
		t.Errorf("-wide cut the query:\n%s", r.out)
	}
	r = run(t, f, "", "list", "-limit", "2")
	if n := strings.Count(r.out, "\n"); n != 4 || !strings.Contains(r.out, "… and 3 more (-limit 0 shows all)") {
		t.Errorf("-limit 2 printed %d lines:\n%s", n, r.out)
	}
	r = run(t, f, "", "list", "-blocking")
	if strings.Contains(r.out, "SELECT 30") || !strings.Contains(r.out, "ROOT blocks 1") || !strings.Contains(r.out, "waits on 10") {
		t.Errorf("-blocking:\n%s", r.out)
	}
}

func TestUsageErrors(t *testing.T) {
	f := &fakeDB{names: []string{"prod", "staging"}}
	tests := []struct {
		args []string
		say  string
	}{
		{[]string{"list", "-min", "5"}, `"5": add a unit, e.g. 5s`},
		{[]string{"list", "-min", "-5m"}, `must not be negative`},
		{[]string{"list", "-state", "sleeping"}, `idle-in-transaction (or idle): sessions waiting for their client inside an open transaction`},
		{[]string{"list", "-app", "[x"}, `not a valid pattern`},
		{[]string{"list", "-limit", "-1"}, `-limit must be 0`},
		{[]string{"list", "-watch", "5"}, `add a unit`},
		{[]string{"list", "-target", "nope"}, `unknown target "nope"; targets: prod, staging`},
		{[]string{"cancel", "-y"}, `which sessions? Give pids`},
		{[]string{"cancel", "-target", "nope", "-app", "x"}, `unknown target "nope"`},
		{[]string{"cancel", "-target", "prod", "12", "x"}, `"x" is not a pid`},
		{[]string{"terminate", "12"}, `there are 2 targets, say which with -target (prod, staging)`},
		{[]string{"doctor", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			r := run(t, f, "", tc.args...)
			if r.code != ExitUsage || !strings.Contains(r.err, tc.say) || !strings.Contains(r.err, "usage: pgkill "+tc.args[0]) {
				t.Errorf("exit %d, want 2 and %q:\n%s", r.code, tc.say, r.err)
			}
			if len(f.signals) > 0 {
				t.Fatalf("signalled %v", f.signals)
			}
		})
	}
}

// Cancel and terminate tell the same story about a session, and offer only
// a step that would be taken.
func TestSignalRefusals(t *testing.T) {
	idle := backend(5, time.Hour, "COMMIT")
	idle.State = "idle"
	idleTx := backend(6, 3*time.Minute, "UPDATE t SET x = 1")
	idleTx.State = pg.StateIdleInTransaction
	idleTx.XactStart = time.Now().Add(-3 * time.Minute)
	protected := backend(7, time.Hour, "VACUUM")
	protected.Protected = "protected (user=rdsadmin)"
	f := &fakeDB{names: []string{"prod"},
		backends: map[int32]pg.Backend{5: idle, 6: idleTx, 7: protected},
		errs:     map[int32]error{8: pg.ErrHidden, 9: pg.ErrUnavailable}}
	tests := []struct {
		action string
		pid    string
		code   int
		say    string
	}{
		{"cancel", "5", ExitNothingDone, "pid 5: nothing to end: it is idle (no statement running, no transaction open); pgkill spares plain idle sessions on purpose; nothing signalled"},
		{"terminate", "5", ExitNothingDone, "pid 5: nothing to end: it is idle (no statement running, no transaction open); pgkill spares plain idle sessions on purpose; nothing signalled"},
		{"cancel", "6", ExitNothingDone, "cancel does nothing to a session idle in transaction (no statement is running); ending its transaction needs: pgkill terminate -target prod 6"},
		{"cancel", "7", ExitNothingDone, "refused: protected (user=rdsadmin); nothing signalled"},
		{"terminate", "7", ExitNothingDone, "refused: protected (user=rdsadmin); nothing signalled"},
		{"cancel", "8", ExitNothingDone, `pid 8 on prod belongs to role "app", whose sessions pgkill's role "pgkill" cannot see, so it cannot be identified or signalled (GRANT pg_read_all_stats TO pgkill): session hidden from pgkill's role; nothing signalled (see pgkill doctor)`},
		{"terminate", "404", ExitNothingDone, "no client backend with that pid"},
		{"terminate", "9", ExitUnreadable, "COULD NOT BE READ"},
	}
	for _, tc := range tests {
		t.Run(tc.action+tc.pid, func(t *testing.T) {
			r := run(t, f, "y\n", tc.action, "-y", tc.pid)
			if r.code != tc.code || !strings.Contains(r.out, tc.say) {
				t.Errorf("exit %d, want %d and %q:\n%s", r.code, tc.code, tc.say, r.out)
			}
			if len(f.signals) > 0 {
				t.Fatalf("signalled %v", f.signals)
			}
			if strings.Contains(r.out, "no longer running") || strings.Contains(r.out, "use terminate") {
				t.Errorf("old story:\n%s", r.out)
			}
		})
	}
	if r := run(t, f, "", "terminate", "6"); !strings.Contains(r.out, "its open transaction (open for 3m00s) is rolled back") || r.code != ExitNothingDone ||
		!strings.Contains(r.out, "not confirmed; nothing signalled") {
		t.Errorf("terminate confirmation:\n%s", r.out)
	}
}

func TestSignalSeveralPids(t *testing.T) {
	root := backend(10, 2*time.Minute, "UPDATE t SET x = 1")
	root.Blocking, root.BlockingTotal = 2, 3
	f := &fakeDB{names: []string{"prod"},
		backends: map[int32]pg.Backend{10: root, 11: backend(11, time.Minute, "SELECT 11"), 12: backend(12, time.Minute, "SELECT 12"),
			13: backend(13, time.Minute, "SELECT 13"), 14: backend(14, time.Minute, "SELECT 14")},
		outcome: map[int32]pg.Outcome{12: {Result: pg.Gone}},
		verify: map[int32]pg.Verification{
			11: {State: pg.StateActive, After: 9400 * time.Millisecond, WaitEventType: "Lock", WaitEvent: "relation", Locks: 3},
			13: {Ended: true, How: "query ended", After: 300 * time.Millisecond, State: pg.StateIdleInTxAborted, Locks: 0},
			14: {Ended: true, How: "query ended", After: 1500 * time.Millisecond, State: pg.StateIdleInTxAborted, AbortedTxOpen: true, Locks: 2},
		}}
	inTx := f.backends[11]
	inTx.QueryStart = time.Now().Add(-time.Minute)
	inTx.XactStart = inTx.QueryStart.Add(-4 * time.Minute)
	f.backends[11] = inTx
	r := run(t, f, "y\n", "cancel", "10", "11", "12", "-target", "prod", "13", "404", "14")
	for _, s := range []string{
		"blocks 3 sessions (2 directly): ending it frees them",
		"cancel these 5 sessions on prod (pids 10, 11, 12, 13, 14)? [y/N]",
		"watched for up to 10s",
		"it runs inside a transaction open for 5m00s: cancel ends the statement, and the transaction stays open (aborted) until the client rolls back",
		"pid 10 on prod: ended: query ended 120ms after the signal\n",
		"pid 11 on prod: STILL RUNNING 9.4s after the signal, when pgkill stopped watching (state active, waiting on Lock/relation, holds 3 locks)",
		"Next: pgkill terminate -target prod 11",
		"pid 12 on prod: nothing signalled: that statement is no longer running",
		"pid 13 on prod: ended: query ended 300ms after the signal; its transaction is still open (aborted) but holds no locks: it ends when the client rolls back",
		"pid 14 on prod: ended: query ended 1.5s after the signal; its transaction is still open (aborted) and holds 2 locks until the client rolls back; to end it: pgkill terminate -target prod 14",
		"pid 404 on prod: no client backend",
	} {
		if !strings.Contains(r.out, s) {
			t.Errorf("stdout lacks %q", s)
		}
	}
	if r.code != ExitStillRunning {
		t.Errorf("exit %d, want 4 (still running beats nothing signalled)", r.code)
	}
	if got := f.signals; len(got) != 5 {
		t.Errorf("signalled %v", got)
	}
	if t.Failed() {
		t.Log(r.out)
	}
}

// Control characters from the database never reach the terminal raw: a
// query could otherwise rewrite the confirmation line.
func TestControlCharactersShown(t *testing.T) {
	evil := backend(10, time.Hour, "SELECT 1 /* \x1b[2K\rterminate pid 1? */\u202e")
	evil.Application = "we\x1b]0;b\x07"
	evil.User = "a\tb"
	f := &fakeDB{names: []string{"prod"}, backends: map[int32]pg.Backend{10: evil},
		listings: []pg.Listing{{Target: "prod", Backends: []pg.Backend{evil}}}}
	for _, args := range [][]string{{"list"}, {"list", "-wide"}, {"terminate", "10"}} {
		r := run(t, f, "", args...)
		for _, c := range []string{"\x1b", "\r", "\x07", "\u202e", "a\tb"} {
			if strings.Contains(r.out, c) {
				t.Errorf("%v printed %q raw:\n%s", args, c, r.out)
			}
		}
		if !strings.Contains(r.out, `\x1b[2K terminate`) || !strings.Contains(r.out, `we\x1b]0;b\x07`) {
			t.Errorf("%v: escape not shown:\n%s", args, r.out)
		}
	}
}

func TestVisible(t *testing.T) {
	for in, want := range map[string]string{
		"plain ünïcode ✓": "plain ünïcode ✓",
		"a\nb\tc\rd":      `a\nb\tc\rd`,
		"\x1b[31m\x7f":    `\x1b[31m\x7f`,
		"\u009b1m":        `\u009b1m`,
		"ab\u202ecd":      `ab\u202ecd`,
		"bad\xffbyte":     `bad\xffbyte`,
	} {
		if got := Visible(in); got != want {
			t.Errorf("Visible(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDoctorExitCodes(t *testing.T) {
	ok := pg.Report{Target: "a", Version: "16.1", User: "pgkill"}
	missing := pg.Report{Target: "b", User: "pgkill", Missing: []string{"pg_read_all_stats: GRANT pg_read_all_stats TO pgkill"}}
	down := pg.Report{Target: "c", Err: errors.New("doctor c: connection refused")}
	for _, tc := range []struct {
		reports []pg.Report
		code    int
	}{
		{[]pg.Report{ok}, ExitOK},
		{[]pg.Report{ok, missing}, ExitError},
		{[]pg.Report{missing, down}, ExitError},
		{[]pg.Report{ok, down}, ExitUnreadable},
	} {
		r := run(t, &fakeDB{names: []string{"a", "b", "c"}, reports: tc.reports}, "", "doctor")
		if r.code != tc.code {
			t.Errorf("%d reports: exit %d, want %d\n%s", len(tc.reports), r.code, tc.code, r.out)
		}
		if len(tc.reports) > 1 && tc.reports[1].Target == "b" && !strings.Contains(r.out, "MISSING: pg_read_all_stats") {
			t.Errorf("missing grant not shown:\n%s", r.out)
		}
	}
}

// Doctor says how each target logs in and whether that works, where it
// came from and its role — never its DSN.
func TestDoctorLoginAndOrigin(t *testing.T) {
	f := &fakeDB{names: []string{"prod", "orders-1", "orders-2", "gone"},
		specs: []pg.TargetSpec{
			{Name: "prod", DSN: "postgres://pgkill:secret@prod"},
			{Name: "orders-1", Origin: "Aurora cluster orders in eu-west-1", Role: "writer"},
			{Name: "orders-2", Origin: "Aurora cluster orders in eu-west-1", Role: "reader"},
		},
		reports: []pg.Report{
			{Target: "prod", Auth: "password in the DSN", Version: "16.1", User: "pgkill"},
			{Target: "orders-1", Auth: "IAM token for user pgkill at orders-1.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)", Version: "16.1", User: "pgkill"},
			{Target: "orders-2", Auth: "IAM token for user pgkill at orders-2.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)", Err: fmt.Errorf("doctor orders-2: %w", &pg.Error{Kind: pg.ErrAuth, Code: "28000", Message: "PAM authentication failed"})},
			{Target: "gone", Auth: "secret prod/pgkill", Err: errors.New("doctor gone: connection refused")},
		}}
	r := runOpts(t, f, Options{TargetsFrom: "PGKILL_TARGETS"}, "", "doctor")
	for _, want := range []string{
		"== prod\n  target: configured (PGKILL_TARGETS)\n  login: password in the DSN (works)\n",
		"== orders-1\n  target: discovered: Aurora cluster orders in eu-west-1, role writer\n  login: IAM token for user pgkill at orders-1.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1) (works)\n",
		"== orders-2\n  target: discovered: Aurora cluster orders in eu-west-1, role reader\n  login: IAM token for user pgkill at orders-2.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1) (REFUSED)\n  COULD NOT BE READ: PAM authentication failed [SQLSTATE 28000]",
		"== gone\n  target: no longer in the fleet\n  login: secret prod/pgkill (not known to work: the server could not be reached)\n",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out, "secret@") {
		t.Errorf("doctor shows a DSN:\n%s", r.out)
	}
	if r.code != ExitUnreadable {
		t.Errorf("exit %d, want %d", r.code, ExitUnreadable)
	}
}

// cancelling is a fleet that ends the watch (as Ctrl-C would) on its nth
// listing.
type cancelling struct {
	*fakeDB
	n, calls int
	cancel   context.CancelFunc
}

func (c *cancelling) List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing {
	c.calls++
	if c.calls == c.n {
		c.cancel()
	}
	return c.fakeDB.List(ctx, targets, f)
}

func TestWatch(t *testing.T) {
	for _, terminal := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		f := &cancelling{fakeDB: &fakeDB{names: []string{"prod"}, listings: []pg.Listing{{Target: "prod",
			Backends: []pg.Backend{backend(10, time.Hour, "SELECT 1")}}}}, n: 3, cancel: cancel}
		var out bytes.Buffer
		c := &CLI{DB: f, Out: &out, Err: &out, Opts: Options{MinDuration: time.Minute, Terminal: terminal}}
		err := c.List(ctx, []string{"-watch", "100ms", "-min", "0s"})
		if err != nil {
			t.Errorf("terminal=%v: Ctrl-C ended the watch with %v, want exit 0", terminal, err)
		}
		// The third listing was cut short by Ctrl-C: it is not shown.
		if got := strings.Count(out.String(), "every 100ms (Ctrl-C stops)"); got != 2 {
			t.Errorf("terminal=%v: %d listings, want 2:\n%s", terminal, got, out.String())
		}
		if clears := strings.Count(out.String(), "\x1b[H\x1b[2J"); (clears == 2) != terminal || (clears == 0) == terminal {
			t.Errorf("terminal=%v: %d screen clears", terminal, clears)
		}
	}
}

// -watch -json prints one JSON document per listing and nothing else.
func TestWatchJSON(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &cancelling{fakeDB: &fakeDB{names: []string{"prod"}, listings: []pg.Listing{{Target: "prod"}}}, n: 3, cancel: cancel}
	var out bytes.Buffer
	c := &CLI{DB: f, Out: &out, Err: &out, Opts: Options{Terminal: true}}
	if err := c.List(ctx, []string{"-watch", "100ms", "-json"}); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	n := 0
	for {
		var v map[string]any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not a JSON stream after %d documents: %v\n%s", n, err, out.String())
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d documents, want 2", n)
	}
}

// Doctor says where the targets come from: the variable that configured
// them, or that nothing did.
func TestDoctorSaysWhereTargetsComeFrom(t *testing.T) {
	f := &fakeDB{names: []string{"default"}, reports: []pg.Report{{Target: "default", Version: "16.1", User: "pgkill"}}}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{TargetsFrom: "PGKILL_TARGETS"}, "target: configured (PGKILL_TARGETS)\n"},
		{Options{TargetsFrom: "DATABASE_URL"}, "target: configured (DATABASE_URL)\n"},
		{Options{TargetsFrom: "the libpq PG* variables"}, "target: configured (the libpq PG* variables)\n"},
		{Options{Unconfigured: true}, "target: not configured: libpq's default server (set PGKILL_TARGETS or DATABASE_URL)\n"},
	} {
		if r := runOpts(t, f, tc.opts, "", "doctor"); !strings.Contains(r.out, tc.want) {
			t.Errorf("%+v: doctor lacks %q:\n%s", tc.opts, tc.want, r.out)
		}
	}
}

// A target that cannot be read exits 3 from every command, whatever the
// reason (a refused login too), and says why once: without the operation
// pg wraps it in, which would name the target and pid a second time. With
// nothing configured, how to configure pgkill comes first.
func TestUnreadableTargetSaidOnce(t *testing.T) {
	refused := fmt.Errorf("read pid 5 on default: list default: %w", &pg.Error{Kind: pg.ErrAuth, Code: "28P01", Message: `password authentication failed for user "u"`})
	down := fmt.Errorf("list default: %w", &pg.Error{Kind: pg.ErrUnavailable, Message: "could not connect (user root): /var/run/postgresql/.s.PGSQL.5432: no such file or directory"})
	f := &fakeDB{names: []string{"default"}, errs: map[int32]error{5: refused},
		listings: []pg.Listing{{Target: "default", Err: refused}}}
	for _, args := range [][]string{{"cancel", "5"}, {"terminate", "-y", "5"}, {"list"}} {
		r := run(t, f, "", args...)
		if r.code != ExitUnreadable || strings.Count(r.out, "password authentication failed") != 1 ||
			strings.Contains(r.out, "list default") || strings.Contains(r.out, "read pid") {
			t.Errorf("%v: exit %d, want 3 and the cause once:\n%s", args, r.code, r.out)
		}
	}
	f = &fakeDB{names: []string{"default"}, listings: []pg.Listing{{Target: "default", Err: down}}}
	r := runOpts(t, f, Options{Unconfigured: true}, "", "list")
	if !strings.HasPrefix(r.out, "default: COULD NOT BE READ: no target is configured (set PGKILL_TARGETS or DATABASE_URL") ||
		!strings.Contains(r.out, "no such file or directory") {
		t.Errorf("unconfigured: the hint must come first:\n%s", r.out)
	}
}

// The command line reads -state with pg's parser, the one Slack's state=
// uses: the same spellings mean the same, and the listing asks pg for the
// state by its one name.
func TestStateParsedAsSlackDoes(t *testing.T) {
	for _, in := range []string{"", "all", "active", "idle", "idle-in-transaction", "idle_in_transaction", "idle in transaction", "sleeping", "IDLE"} {
		want, wantErr := pg.ParseFilterState(in)
		f := &recording{fakeDB: &fakeDB{names: []string{"prod"}, listings: []pg.Listing{{Target: "prod"}}}}
		var out, errOut bytes.Buffer
		c := &CLI{DB: f, Out: &out, Err: &errOut, Opts: Options{MinDuration: time.Minute}}
		err := c.List(context.Background(), []string{"-state", in})
		if (wantErr != nil) != (Code(err) == ExitUsage) || (wantErr == nil && f.filter.State != want) {
			t.Errorf("-state %q: exit %d, state %q; pg.ParseFilterState: %q, %v", in, Code(err), f.filter.State, want, wantErr)
		}
	}
}

// recording is a fleet that keeps the filter it was asked to list with.
type recording struct {
	*fakeDB
	filter pg.Filter
}

func (r *recording) List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing {
	r.filter = f
	return r.fakeDB.List(ctx, targets, f)
}

// In a lock pile-up the listing comes without the tree: it is printed at
// once with the likely root, and again when the tree comes; with -json, as
// two documents. When the tree does not come within -wait, the first is
// all there is, and stderr says so.
func TestListDegradedThenFull(t *testing.T) {
	root := backend(10, time.Hour, "BEGIN")
	root.State, root.LikelyRoot = pg.StateIdleInTransaction, true
	waiter := backend(11, time.Minute, "UPDATE t SET x = 1")
	waiter.WaitEventType, waiter.WaitEvent = "Lock", "transactionid"
	busy := pg.Listing{Target: "prod", Degraded: true, LockWaits: 812, Backends: []pg.Backend{waiter, root},
		NoTree: "the lock table is busy: 812 sessions are waiting on locks (PostgreSQL's deadlock checks); the blocking tree follows when it answers"}
	fullRoot := root
	fullRoot.LikelyRoot, fullRoot.Blocking, fullRoot.BlockingTotal = false, 1, 812
	fullWaiter := waiter
	fullWaiter.BlockedBy = []int32{10}
	full := pg.Listing{Target: "prod", Backends: []pg.Backend{fullWaiter, fullRoot}}
	f := &fakeDB{names: []string{"prod"}, listings: []pg.Listing{busy}, full: map[string]pg.Listing{"prod": full}}

	r := run(t, f, "", "list")
	first, second, _ := strings.Cut(r.out, "-- with the blocking tree")
	if r.code != ExitOK || !strings.Contains(first, "likely ROOT") || !strings.Contains(first, "the lock table is busy: 812 sessions") ||
		!strings.Contains(second, "ROOT blocks 812") || strings.Contains(second, "likely") ||
		!strings.Contains(r.err, "waiting for the blocking tree of prod") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	r = run(t, f, "", "list", "-json")
	dec := json.NewDecoder(strings.NewReader(r.out))
	var docs []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%v\n%s", err, r.out)
		}
		docs = append(docs, d)
	}
	if len(docs) != 2 || !strings.Contains(fmt.Sprint(docs[0]["targets"]), "lock_table_busy:true") || strings.Contains(fmt.Sprint(docs[1]["targets"]), "lock_table_busy") {
		t.Errorf("-json: %d documents:\n%s", len(docs), r.out)
	}

	delete(f.full, "prod") // the tree never comes
	r = run(t, f, "", "list", "-wait", "100ms")
	if r.code != ExitOK || strings.Contains(r.out, "-- with the blocking tree") || !strings.Contains(r.err, "prod: the blocking tree did not come within 100ms") {
		t.Errorf("tree late: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
}
