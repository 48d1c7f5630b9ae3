package blocks_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var now = time.Date(2026, 11, 25, 3, 14, 0, 0, time.UTC)

// golden compares msg's JSON with testdata/name.json, and checks it against
// Slack's limits whatever the golden file says.
func golden(t *testing.T, name string, msg blocks.Message) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep <, > and & readable in the golden files
	enc.SetIndent("", "  ")
	if err := enc.Encode(msg); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	checkLimits(t, msg)
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./blocks -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; if the change is intended run go test ./blocks -update\ngot:\n%s", path, got)
	}
}

func checkLimits(t *testing.T, msg blocks.Message) {
	t.Helper()
	raw, err := json.Marshal(msg.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range blocks.Violations(raw) {
		t.Error(v)
	}
	if n := blocks.TextLength(raw); n > blocks.MaxMessageText {
		t.Errorf("%d characters of text in one message, over pgkill's budget of %d", n, blocks.MaxMessageText)
	}
	if msg.Text == "" {
		t.Error("no notification text")
	}
}

func backend(i int) pg.Backend {
	return pg.Backend{
		Identity: pg.Identity{
			Target: "prod", PID: int32(4000 + i),
			BackendStart: now.Add(-time.Hour).Add(time.Duration(i) * time.Microsecond),
			QueryStart:   now.Add(-time.Duration(300+i) * time.Second),
			ServerStart:  now.Add(-720 * time.Hour),
		},
		Database: "app", User: "etl", Application: "nightly-report", Client: "10.0.0.7",
		BackendType: "client backend", State: pg.StateActive, WaitEventType: "IO", WaitEvent: "DataFileRead",
		Query:    "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.total > 100",
		Duration: time.Duration(300+i) * time.Second,
	}
}

// idleRoot is an idle-in-transaction session that blocks a queue: what an
// approver must see to decide (state, transaction age, what it blocks and
// on which lock they queue).
func idleRoot() pg.Backend {
	b := backend(2)
	b.State, b.WaitEventType, b.WaitEvent = pg.StateIdleInTransaction, "Client", "ClientRead"
	b.Duration, b.XactAge = 13*time.Minute, 14*time.Minute
	b.Query = "UPDATE orders SET status = ? WHERE id = ?"
	b.Blocking, b.BlockingTotal = 3, 212
	b.Queue = []pg.LockQueue{
		{Lock: pg.Lock{Type: "transactionid", Mode: "ShareLock", Relation: "public.orders"}, Sessions: 2},
		{Lock: pg.Lock{Type: "relation", Mode: "AccessExclusiveLock", Relation: "public.orders"}, Sessions: 1},
	}
	return b
}

// nasty has every character that could break mrkdwn or a code block, and a
// 10 kB query.
func nasty(i int) pg.Backend {
	b := backend(i)
	b.User = "we<ird>&`user`"
	b.Application = "app 🚀 <!channel> & `rm`"
	b.Database = "db```x"
	b.Query = "SELECT '<&>' AS \"```\", ':fire:' -- 🚀\n" + strings.Repeat("x & y < z > w ", 10000/14)
	return b
}

func TestListingGolden(t *testing.T) {
	chain := []pg.Backend{backend(1), backend(2), backend(3)}
	chain[0].State, chain[0].WaitEventType, chain[0].WaitEvent = pg.StateIdleInTransaction, "Client", "ClientRead"
	chain[0].Duration = 2 * time.Hour
	chain[0].Blocking, chain[0].BlockingTotal = 1, 2
	chain[1].WaitEventType, chain[1].WaitEvent = "Lock", "relation"
	chain[1].BlockedBy, chain[1].Blocking, chain[1].BlockingTotal = []int32{4001}, 1, 1
	chain[2].WaitEventType, chain[2].WaitEvent, chain[2].BlockedBy = "Lock", "relation", []int32{4002}
	protected := backend(4)
	protected.User, protected.Protected = "rdsadmin", "protected (user=rdsadmin)"
	prepared := backend(5)
	prepared.WaitEventType, prepared.WaitEvent, prepared.BlockedBy = "Lock", "relation", []int32{0}

	tests := []struct {
		name string
		l    blocks.Listing
	}{
		{"listing_empty", blocks.Listing{Targets: []string{"prod"}, Threshold: time.Minute, Results: []pg.Listing{{Target: "prod"}}, Now: now}},
		{"listing_empty_filtered", blocks.Listing{Targets: []string{"prod"}, Threshold: time.Minute, Filters: "db=orders", Results: []pg.Listing{{Target: "prod"}}, Now: now}},
		{"listing_empty_one_failed", blocks.Listing{Targets: []string{"prod", "dr"}, Threshold: time.Minute,
			Results: []pg.Listing{{Target: "prod"}, {Target: "dr", Err: errors.New("connect: connection refused")}}, Now: now}},
		{"listing_empty_all_failed", blocks.Listing{Targets: []string{"dr"}, Threshold: time.Minute,
			Results: []pg.Listing{{Target: "dr", Err: errors.New("timed out")}}, Now: now}},
		{"listing_empty_hidden", blocks.Listing{Targets: []string{"prod"}, Threshold: time.Minute,
			Results: []pg.Listing{{Target: "prod", Hidden: 2}}, Now: now}},
		{"listing_no_tree", blocks.Listing{Targets: []string{"prod"}, Threshold: time.Minute,
			Results: []pg.Listing{{Target: "prod", Backends: []pg.Backend{backend(1)}, NoTree: "the blocking tree took over 1s (412,000 wait edges)"}}, Now: now}},
		{"listing_degraded", blocks.Listing{Targets: []string{"prod"}, Threshold: 0, Args: "prod 0s", Now: now,
			Results: []pg.Listing{{Target: "prod", Degraded: true, LockWaits: 612,
				NoTree: "the lock table is busy: 612 sessions are waiting on locks (PostgreSQL's deadlock checks); the blocking tree follows when it answers",
				Backends: func() []pg.Backend {
					root := idleRoot()
					root.Blocking, root.BlockingTotal, root.Queue, root.LikelyRoot = 0, 0, nil, true
					w := backend(3)
					w.WaitEventType, w.WaitEvent = "LWLock", "LockManager"
					return []pg.Backend{w, root}
				}()}}}},
		{"listing_one", blocks.Listing{Targets: []string{"prod"}, Threshold: time.Minute, Args: "prod", Results: []pg.Listing{{Target: "prod", Backends: []pg.Backend{backend(1)}}}, Now: now}},
		{"listing_chain_protected_errors", blocks.Listing{
			Targets: []string{"prod", "stage", "dr"}, Threshold: 30 * time.Second, Filters: "user=etl", Args: "30s user=etl",
			Results: []pg.Listing{
				{Target: "prod", Backends: append(chain, protected, prepared)},
				{Target: "stage", Err: fmt.Errorf("list stage: %w", pg.ErrUnavailable)},
				{Target: "dr", Err: errors.New("list dr: timed out")},
			}, Now: now}},
		{"listing_roles", blocks.Listing{Targets: []string{"orders-1", "orders-2"}, Threshold: time.Minute, Roles: map[string]string{"orders-1": "writer", "orders-2": "reader"},
			Results: []pg.Listing{{Target: "orders-1", Backends: []pg.Backend{onTarget(backend(1), "orders-1")}}, {Target: "orders-2", Backends: []pg.Backend{onTarget(backend(2), "orders-2")}}}, Now: now}},
		{"listing_nasty", blocks.Listing{Targets: []string{"prod"}, Threshold: time.Minute, Results: []pg.Listing{{Target: "prod", Backends: []pg.Backend{nasty(1)}}}, Now: now}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, blocks.ListingMessage(tc.l)) })
	}
}

// Listings of any size stay inside Block Kit's limits, and say when they
// show fewer than they found.
func TestListingLimits(t *testing.T) {
	for _, n := range []int{0, 1, 17, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var bs []pg.Backend
			for i := range n {
				bs = append(bs, nasty(i))
			}
			msg := blocks.ListingMessage(blocks.Listing{
				Targets: []string{"prod", "stage"}, Threshold: time.Minute, Args: strings.Repeat("x", 3000),
				Results: []pg.Listing{{Target: "prod", Backends: bs}, {Target: "stage", Err: errors.New(strings.Repeat("<&>", 2000))}}, Now: now,
			})
			checkLimits(t, msg)
			raw, _ := json.Marshal(msg)
			if shown := strings.Count(string(raw), blocks.ActionTerminate); shown != min(n, blocks.MaxListed) {
				t.Errorf("%d backends have buttons, want %d", shown, min(n, blocks.MaxListed))
			}
			if want := fmt.Sprintf("showing the %d longest of %d", blocks.MaxListed, n); (n > blocks.MaxListed) != strings.Contains(string(raw), want) {
				t.Errorf("showing-N-of-M note wrong for %d backends", n)
			}
			if strings.Contains(string(raw), "<!channel>") || strings.Contains(string(raw), "we<ird>") {
				t.Error("user-controlled text not escaped")
			}
		})
	}
}

func TestRequestGolden(t *testing.T) {
	b := backend(1)
	base := request.Request{ID: "R7", Action: pg.Cancel, Backend: b, Requester: "U0REQ",
		Requested: now, Expires: now.Add(15 * time.Minute)}
	with := func(f func(*request.Request)) request.Request { r := base; f(&r); return r }
	tests := map[string]request.Request{
		"request_pending": with(func(r *request.Request) { r.State = request.Pending }),
		"request_idle_root_blocker": with(func(r *request.Request) {
			r.State, r.Action, r.Backend = request.Pending, pg.Terminate, idleRoot()
		}),
		"request_pending_one_of_two": with(func(r *request.Request) {
			r.State, r.Needed, r.Votes = request.Pending, 2, votes("U0APP")
		}),
		"request_done_two_approvals": with(func(r *request.Request) {
			r.State, r.Needed, r.Votes, r.Decider, r.Decided = request.Done, 2, votes("U0APP", "U0APP2"), "U0APP2", now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Sent}
			r.Verified = pg.Verification{Ended: true, How: "query ended", After: 300 * time.Millisecond}
		}),
		"request_approved": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Approved, "U0APP", now.Add(time.Minute)
		}),
		"request_ended": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, "U0APP", now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Sent}
			r.Verified = pg.Verification{Ended: true, How: "query ended", After: 120 * time.Millisecond}
		}),
		"request_cancel_still_running": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, "U0APP", now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Sent}
			r.Verified = pg.Verification{After: 10 * time.Second, State: pg.StateActive, WaitEventType: "IO", WaitEvent: "DataFileRead"}
		}),
		"request_terminate_still_running": with(func(r *request.Request) {
			r.Action, r.State, r.Decider, r.Decided = pg.Terminate, request.Done, "U0APP", now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Terminate, Result: pg.Sent}
			r.Verified = pg.Verification{After: 10 * time.Second, State: pg.StateActive, WaitEventType: "LWLock", WaitEvent: "BufferMapping"}
		}),
		"request_gone": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, "U0APP", now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Gone}
		}),
		"request_denied_by_postgres": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, "U0APP", now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Denied, Message: "permission denied to cancel query", Fix: "GRANT pg_signal_backend TO <pgkill role>"}
		}),
		"request_protected_since_listed": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, "U0APP", now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Protected, Message: `app=pg_dump* (user "backup", application_name "pg_dump <nightly>")`}
		}),
		"request_error": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided, r.Err = request.Done, "U0APP", now.Add(time.Minute), "cancel pid 4001 on prod: database unavailable"
		}),
		"request_denied": with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Denied, "U0APP", now.Add(time.Minute)
		}),
		"request_expired":   with(func(r *request.Request) { r.State, r.Decided = request.Expired, now.Add(15*time.Minute) }),
		"request_withdrawn": with(func(r *request.Request) { r.State, r.Decided = request.Withdrawn, now.Add(time.Minute) }),
		"request_closed_by_pgkill": with(func(r *request.Request) {
			r.State, r.Decided = request.Withdrawn, now.Add(time.Minute)
			r.NotSent = "its card was never posted (or its post never recorded) within 10s by a live pgkill process, so nobody could approve it: nothing was signalled"
		}),
		"request_nasty": with(func(r *request.Request) { r.State, r.Backend = request.Pending, nasty(2) }),
	}
	for name, r := range tests {
		t.Run(name, func(t *testing.T) { golden(t, name, blocks.RequestMessage(r, []string{"U0APP", "S0DBA"})) })
	}
}

// fleet is a static target, one that left (stage has no spec: doctor still
// names it) and a discovered Aurora cluster.
var fleet = []pg.TargetSpec{
	{Name: "prod", DSN: "postgres://pgkill:secret@prod/postgres"},
	{Name: "orders-1", Origin: "Aurora cluster orders in eu-west-1", Role: "writer"},
	{Name: "orders-2", Origin: "Aurora cluster orders in eu-west-1", Role: "reader"},
	{Name: "<&>", Origin: "RDS instance in eu-west-1", Role: "replica"},
}

func TestHelpGolden(t *testing.T) {
	golden(t, "help", blocks.Help("/pgkill", []string{"prod", "stage"}, time.Minute))
	golden(t, "request_stale_card", blocks.StaleCard("R7"))
	golden(t, "usage_error", blocks.UsageError("/pgkill", `unknown target or argument "<&>"`))
	golden(t, "targets", blocks.Targets(fleet))
	golden(t, "targets_none", blocks.Targets(nil))
	golden(t, "doctor", blocks.Doctor([]pg.Report{
		{Target: "prod", Auth: "password in the DSN", Version: "15.18", VersionNum: 150018, User: "pgkill", SignalBackend: true, ReadAllStats: true,
			Problems: []string{"superuser sessions (rdsadmin on RDS) cannot be signalled"},
			Settings: []pg.Setting{{Name: "statement_timeout", Value: "0", Advice: "unset: set it"}, {Name: "log_min_error_statement", Value: "error"}}},
		{Target: "stage", Auth: "secret arn:aws:secretsmanager:eu-west-1:1:secret:stage", Err: errors.New("doctor stage: database unavailable")},
		{Target: "orders-1", Auth: "IAM token for user pgkill at orders-1.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)", Version: "16.4", VersionNum: 160004, User: "pgkill",
			Missing: []string{"pg_read_all_stats", "pg_signal_backend"}},
		{Target: "orders-2", Auth: "IAM token for user pgkill at orders-2.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)",
			Err: fmt.Errorf("doctor orders-2: %w", &pg.Error{Kind: pg.ErrAuth, Code: "28000", Message: "PAM authentication failed for user \"pgkill\"", Hint: "check rds-db:connect"})},
	}, fleet))
}

func TestFormat(t *testing.T) {
	durations := map[time.Duration]string{
		-time.Second: "0s", 850 * time.Millisecond: "850ms", 42 * time.Second: "42s",
		5*time.Minute + 3*time.Second: "5m03s", 2*time.Hour + 5*time.Minute: "2h05m", 76 * time.Hour: "3d04h",
	}
	for d, want := range durations {
		if got := blocks.Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
	if got := blocks.OneLine("select\n  1,\t2", 9); got != "select 1…" {
		t.Errorf("OneLine = %q", got)
	}
	if got := blocks.Escape("a<b>&c"); got != "a&lt;b&gt;&amp;c" {
		t.Errorf("Escape = %q", got)
	}
}

// Twenty backends with 2 kB queries (and a long error) make one message
// under the total budget, each query shown as far as the budget allows.
func TestListingTotalBudget(t *testing.T) {
	var bs []pg.Backend
	for i := range blocks.MaxListed {
		b := backend(i)
		b.BlockedBy = []int32{1, 2, 3}
		b.Query = "UPDATE orders SET note = " + strings.Repeat("x", 2000)
		bs = append(bs, b)
	}
	msg := blocks.ListingMessage(blocks.Listing{Targets: []string{"prod", "stage"}, Threshold: time.Minute, Filters: strings.Repeat("db=x ", 100),
		Results: []pg.Listing{{Target: "prod", Backends: bs}, {Target: "stage", Err: errors.New(strings.Repeat("e", 1000))}}, Now: now})
	checkLimits(t, msg)
	raw, _ := json.Marshal(msg.Blocks)
	if got := strings.Count(string(raw), blocks.ActionTerminate); got != blocks.MaxListed {
		t.Errorf("%d backends shown, want %d", got, blocks.MaxListed)
	}
	if !strings.Contains(string(raw), "UPDATE orders SET note = xxxxxxxxxx") {
		t.Error("the queries are not shown at all")
	}
}

// A doctor report of many targets with findings stays within the budget
// and says what it left out.
func TestDoctorManyTargets(t *testing.T) {
	var rs []pg.Report
	for i := range 60 {
		rs = append(rs, pg.Report{Target: fmt.Sprintf("prod-%02d", i), Version: "15.4", User: "pgkill",
			Problems: []string{strings.Repeat("pgkill cannot see other roles' queries: GRANT pg_read_all_stats TO pgkill. ", 3)},
			Settings: []pg.Setting{{Name: "track_activity_query_size", Value: "1024", Advice: strings.Repeat("raise it to see whole queries ", 4)}}})
	}
	msg := blocks.Doctor(rs, nil)
	checkLimits(t, msg)
	raw, _ := json.Marshal(msg.Blocks)
	if !strings.Contains(string(raw), "more not shown") {
		t.Error("the cut is not said")
	}
}

func TestAlertGolden(t *testing.T) {
	idle := backend(2)
	idle.State, idle.WaitEventType, idle.WaitEvent = pg.StateIdleInTransaction, "Client", "ClientRead"
	idle.Blocking, idle.BlockingTotal = 2, 3
	golden(t, "alert_active", blocks.AlertMessage(blocks.Alert{Backend: backend(1), Since: now, Now: now.Add(time.Minute)}))
	golden(t, "alert_role", blocks.AlertMessage(blocks.Alert{Backend: onTarget(backend(1), "orders-1"), Role: "writer", Since: now, Now: now}))
	golden(t, "alert_idle_blocking", blocks.AlertMessage(blocks.Alert{Backend: idle, Since: now, Now: now}))
	golden(t, "alert_resolved_itself", blocks.AlertMessage(blocks.Alert{Backend: backend(1), Since: now, Now: now.Add(time.Hour), Resolved: true, RanFor: 65 * time.Minute}))
	golden(t, "alert_resolved_request", blocks.AlertMessage(blocks.Alert{Backend: backend(1), Since: now, Now: now.Add(time.Hour), Resolved: true, RanFor: 7 * time.Minute,
		EndedBy: "cancelled through request R3, asked by <@U0REQ> and approved by <@U0APP>"}))
	var many []pg.Backend
	for i := range 40 {
		b := nasty(i)
		b.Target = []string{"prod", "stage"}[i%2]
		many = append(many, b)
	}
	golden(t, "alert_summary", blocks.AlertSummary(blocks.Summary{Backends: many[:7], Show: 3, Now: now}))
	golden(t, "alert_summary_bulk", blocks.AlertSummary(blocks.Summary{Backends: many[:7], Show: 3, BulkSet: "S12", BulkCount: 6, Now: now}))
	checkLimits(t, blocks.AlertSummary(blocks.Summary{Backends: many, Show: 100, BulkSet: "S12", BulkCount: 40, Now: now}))
	golden(t, "alert_summary_resolved", blocks.AlertSummaryResolved(7, now, now.Add(time.Hour)))
	golden(t, "target_down", blocks.TargetDown("prod", errors.New("list prod: database unavailable: dial tcp 10.0.0.1:5432: connect: connection refused"), now))
	golden(t, "target_up", blocks.TargetUp("prod", 3*time.Minute, now))
}

func TestRequestAbortedTransaction(t *testing.T) {
	r := request.Request{ID: "R9", Action: pg.Cancel, Backend: backend(1), Requester: "U0REQ", State: request.Done, Decider: "U0APP",
		Outcome: pg.Outcome{Action: pg.Cancel, Result: pg.Sent}, Verified: pg.Verification{Ended: true, How: "query ended", AbortedTxOpen: true, Locks: 3, State: pg.StateIdleInTxAborted}}
	golden(t, "request_cancel_aborted_tx", blocks.RequestMessage(r, nil))
	r.Verified = pg.Verification{Ended: true, MaybeNext: true, After: 50 * time.Millisecond, How: "the approved statement had already ended before the signal; the signal may have reached the statement after it"}
	m := blocks.RequestMessage(r, nil)
	golden(t, "request_cancel_maybe_next", m)
	if raw, _ := json.Marshal(m.Blocks); strings.Contains(string(raw), "The query ended") {
		t.Error("a signal that may have reached the next statement is reported as a clean end")
	}
}

// Slack asks for new block_ids when a message is updated: each revision of
// a card, listing or alert has its own.
func TestRevisionsHaveNewBlockIDs(t *testing.T) {
	ids := func(m blocks.Message) string {
		raw, _ := json.Marshal(m.Blocks)
		var bs []struct {
			BlockID string `json:"block_id"`
		}
		_ = json.Unmarshal(raw, &bs)
		var out []string
		for _, b := range bs {
			out = append(out, b.BlockID)
		}
		return strings.Join(out, ",")
	}
	r := request.Request{ID: "R1", Action: pg.Cancel, Backend: backend(1), Requester: "U1", State: request.Pending, Requested: now}
	pending := ids(blocks.RequestMessage(r, nil))
	r.State, r.Decider, r.Decided = request.Denied, "U2", now.Add(time.Second)
	if denied := ids(blocks.RequestMessage(r, nil)); strings.Contains(denied, strings.Split(pending, ",")[0]) {
		t.Errorf("card revisions share block_ids: %s / %s", pending, denied)
	}
	l := blocks.Listing{Targets: []string{"prod"}, Results: []pg.Listing{{Target: "prod", Backends: []pg.Backend{backend(1)}}}, Now: now}
	first := ids(blocks.ListingMessage(l))
	l.Now = now.Add(time.Minute)
	if ids(blocks.ListingMessage(l)) == first {
		t.Error("a refreshed listing reuses its block_ids")
	}
}

func TestBulkGolden(t *testing.T) {
	var members []pg.Backend
	for i := range 60 {
		b := backend(i)
		if i%3 == 0 {
			b.Application, b.User = "report", "bi"
		}
		members = append(members, b)
	}
	base := request.Request{ID: "R12", Action: pg.Cancel, Members: members, Scope: "prod ≥ 1m00s app=report*", Requester: "U0REQ",
		Left: map[string]int{"not signallable (protected)": 2}, Reason: "INC-9 report storm",
		Requested: now, Expires: now.Add(15 * time.Minute), Needed: 2}
	pending := base
	pending.State = request.Pending
	golden(t, "bulk_pending", blocks.RequestMessage(pending, []string{"S0DBA"}))
	done := base
	done.State, done.Votes, done.Decider, done.Decided = request.Done, votes("U0A", "U0B"), "U0B", now.Add(time.Minute)
	for i := range members {
		o := pg.Attempt{Outcome: pg.Outcome{Action: pg.Cancel, Result: pg.Sent}, Verified: pg.Verification{Ended: true}}
		switch {
		case i < 3:
			o.Outcome.Result = pg.Gone
		case i < 5:
			o.Verified.Ended = false
		case i == 5:
			o.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Denied}
		case i == 6:
			o.Outcome = pg.Outcome{Action: pg.Cancel, Result: pg.Protected}
		}
		done.Results = append(done.Results, o)
	}
	late := base
	late.State, late.Decider, late.Decided = request.Done, "U0B", now.Add(time.Minute)
	late.NotSent = "pgkill was held up for 40s after the approval, past the time in which it may signal: nothing was signalled"
	golden(t, "bulk_not_sent", blocks.RequestMessage(late, []string{"S0DBA"}))
	m := blocks.RequestMessage(done, []string{"S0DBA"})
	golden(t, "bulk_done", m)
	if raw, _ := json.Marshal(m.Blocks); !strings.Contains(string(raw), "Terminate the 2 still running") {
		t.Error("no next step for the two still running")
	}
	if got := pg.Count(done.Results); got != (pg.Tally{Ended: 53, Skipped: 3, Running: 2, Denied: 1, Protected: 1}) {
		t.Errorf("tally = %+v", got)
	}
	for i, msg := range blocks.MemberList("R12", members) {
		golden(t, fmt.Sprintf("bulk_members_%d", i), msg)
	}
	l := blocks.Listing{Targets: []string{"prod"}, Threshold: time.Minute, Results: []pg.Listing{{Target: "prod", Backends: members[:3]}}, Now: now, BulkSet: "S7", BulkCount: 3}
	golden(t, "listing_bulk", blocks.ListingMessage(l))
}

func TestBulkValueRoundTrip(t *testing.T) {
	in := blocks.Bulk{Action: pg.Terminate, SetID: "S42"}
	out, err := blocks.DecodeBulk(blocks.EncodeBulk(in))
	if err != nil || out != in {
		t.Errorf("round trip: %+v, %v", out, err)
	}
	for _, v := range []string{"", "b1|kill|S1", "b1|cancel|", "v1|cancel|S1", "b1|cancel|S1|x"} {
		if _, err := blocks.DecodeBulk(v); err == nil {
			t.Errorf("DecodeBulk(%q) accepted", v)
		}
	}
}

// The reason form, for one backend and for a bulk request: its title fits
// Slack's 24 characters, and the scope is escaped.
func TestReasonModalGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    blocks.ReasonPrompt
	}{
		{"reason_one", blocks.ReasonPrompt{Action: pg.Terminate, Backend: nasty(1), Required: true, Metadata: `{"u":"U1"}`}},
		{"reason_idle_root_blocker", blocks.ReasonPrompt{Action: pg.Terminate, Backend: idleRoot(), Metadata: `{"u":"U1"}`}},
		{"reason_bulk", blocks.ReasonPrompt{Action: pg.Cancel, Members: 1234, Scope: "prod ≥ 0s app=<report>&`x`", Metadata: `{"u":"U1","v":"b1|cancel|S3"}`}},
	} {
		v := blocks.ReasonModal(tc.p)
		if n := len([]rune(v.Title.Text)); n > 24 {
			t.Errorf("%s: title %q is %d characters, over Slack's 24", tc.name, v.Title.Text, n)
		}
		if v.PrivateMetadata != tc.p.Metadata {
			t.Errorf("%s: metadata %q", tc.name, v.PrivateMetadata)
		}
		golden(t, tc.name, blocks.Message{Text: "modal: " + v.Title.Text, Blocks: v.Blocks.BlockSet})
	}
}

func onTarget(b pg.Backend, target string) pg.Backend {
	b.Target, b.Identity.Target = target, target
	return b
}

// No message built from a spec shows its DSN (which may hold a password).
func TestTargetsHideDSN(t *testing.T) {
	raw, _ := json.Marshal(blocks.Targets(fleet))
	if strings.Contains(string(raw), "secret") || strings.Contains(string(raw), "postgres://") {
		t.Errorf("targets show a DSN: %s", raw)
	}
}

// votes are approvals by users, in order.
func votes(users ...string) []request.Vote {
	out := make([]request.Vote, len(users))
	for i, u := range users {
		out[i] = request.Vote{User: u}
	}
	return out
}

// A rule's card: counting down with Stop and Do it now; a dry run without
// buttons; stopped, carried out (with what would prevent the repeat),
// done now by a person, spared; the breaker and the status.
func TestAutopilotGolden(t *testing.T) {
	rule := autopilot.Rule{Name: "idle-blockers", State: pg.StateIdleInTransaction, Duration: 10 * time.Minute, Blocking: 5,
		Action: autopilot.Terminate, Countdown: time.Minute, Mode: autopilot.Act, Limit: 3, Window: time.Hour, Targets: []string{"prod"}}
	b := idleRoot()
	auto := &request.Auto{Rule: rule.Name, Mode: string(rule.Mode), Why: blocks.AutoWhy(rule, b)}
	base := request.Request{ID: "R9", Action: pg.Terminate, Backend: b, Requester: auto.Actor(), Channel: "CALERT", Needed: 1,
		Requested: now, Expires: now.Add(2 * time.Minute), Deadline: now.Add(time.Minute), State: request.Pending, Auto: auto}
	with := func(f func(*request.Request)) request.Request {
		r := base
		a := *base.Auto
		r.Auto = &a
		f(&r)
		return r
	}
	prevent := &request.Prevention{Setting: "idle_in_transaction_session_timeout", Value: "10min", Role: "etl", DB: "app",
		Current: "0 (off)", Source: "the server's setting", RDS: true}
	tests := map[string]blocks.Message{
		"auto_pending": blocks.RequestMessage(base, []string{"S0DBA"}),
		"auto_dry_run": blocks.RequestMessage(with(func(r *request.Request) { r.Auto.Mode = "dry-run" }), []string{"S0DBA"}),
		"auto_dry_run_closed": blocks.RequestMessage(with(func(r *request.Request) {
			r.Auto.Mode, r.State, r.Decided = "dry-run", request.Expired, now.Add(time.Minute)
			r.NotSent = "dry run: rule idle-blockers would have terminated pid 4002 now; nothing was signalled (its mode is dry-run)"
		}), nil),
		"auto_stopped": blocks.RequestMessage(with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Denied, "U0ONCALL", now.Add(20*time.Second)
		}), nil),
		"auto_done": blocks.RequestMessage(with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, auto.Actor(), now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Terminate, Result: pg.Sent}
			r.Verified = pg.Verification{Ended: true, How: "session ended", After: 80 * time.Millisecond}
			r.Prevent = prevent
		}), nil),
		"auto_done_now": blocks.RequestMessage(with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, "U0APP", now.Add(10*time.Second)
			r.Outcome = pg.Outcome{Action: pg.Terminate, Result: pg.Sent}
			r.Verified = pg.Verification{Ended: true, How: "session ended", After: 80 * time.Millisecond}
		}), nil),
		"auto_spared": blocks.RequestMessage(with(func(r *request.Request) {
			r.State, r.Decider, r.Decided = request.Done, auto.Actor(), now.Add(time.Minute)
			r.Outcome = pg.Outcome{Action: pg.Terminate, Result: pg.Gone}
		}), nil),
		"request_ended_prevent": blocks.RequestMessage(request.Request{ID: "R7", Action: pg.Cancel, Backend: backend(1), Requester: "U0REQ",
			Requested: now, Expires: now.Add(15 * time.Minute), State: request.Done, Decider: "U0APP", Decided: now.Add(time.Minute),
			Outcome:  pg.Outcome{Action: pg.Cancel, Result: pg.Sent},
			Verified: pg.Verification{Ended: true, How: "query ended", After: 120 * time.Millisecond},
			Prevent:  &request.Prevention{Setting: "statement_timeout", Value: "5min", Role: "etl", DB: "app", Current: "1h", Source: "set for the role"}}, nil),
		"auto_breaker": blocks.Breaker("idle-blockers", "prod", "fired 3 times on prod within 1h (its limit: 3 per 1h)", "/pgkill"),
		"auto_status": blocks.AutopilotStatus([]autopilot.Rule{rule, {Name: "long-reports", App: "metabase*", Duration: 30 * time.Minute,
			Action: autopilot.CancelThenTerminate, EscalateAfter: 30 * time.Second, Countdown: 2 * time.Minute, Mode: autopilot.DryRun, Limit: 5, Window: time.Hour}},
			[]pg.PauseRow{{Scope: autopilot.TargetScope("stage"), Reason: "paused by <@U0APP>", By: "U0APP", At: now},
				{Scope: autopilot.BreakerScope("idle-blockers", "prod"), Reason: "fired 3 times on prod within 1h", By: "autopilot", At: now}}, "/pgkill"),
		"auto_status_none": blocks.AutopilotStatus(nil, nil, "/pgkill"),
	}
	for name, m := range tests {
		t.Run(name, func(t *testing.T) { golden(t, name, m) })
	}
}
