package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// High availability, with the built binary: several `pgkill serve`
// replicas sharing one state store and one Slack app, two targets.

const (
	haAlerts  = "C0ALERTS"
	haChannel = "C0INCIDENT"
	haPoll    = 300 * time.Millisecond
)

// logBuffer collects a replica's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the JSON log records with msg and, if set, event.
func (b *logBuffer) records(msg, event string) []map[string]any {
	b.mu.Lock()
	text := b.buf.String()
	b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(text, "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && r["msg"] == msg && (event == "" || r["event"] == event) {
			out = append(out, r)
		}
	}
	return out
}

type haReplica struct {
	name   string
	listen string
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan error
}

// haEnv is a set of replicas sharing a state store, a fake Slack and two
// targets: t1 and t2, on one server, each seeing only its own role's
// queries (no pg_read_all_stats), so a runaway query belongs to one target.
type haEnv struct {
	fake     *fakeslack.Server
	env      []string
	stateDSN string
	dsn      map[string]string // target -> DSN of its role
	all      []*haReplica      // every replica ever started, for the logs
	mu       sync.Mutex
}

func newHA(t *testing.T, state string, extra ...string) *haEnv {
	t.Helper()
	h := &haEnv{fake: fakeslack.New(t), stateDSN: pgtest.Database(t, state),
		dsn: map[string]string{"t1": pgtest.Role(t, "ha_t1"), "t2": pgtest.Role(t, "ha_t2")}}
	h.execState(t, `DO $$ BEGIN
  IF to_regclass('pgkill_lease') IS NOT NULL THEN TRUNCATE pgkill_lease, pgkill_replica, pgkill_alert, pgkill_request; END IF;
END $$`) // -count=n: start afresh
	h.fake.AllowConnections(10)
	h.fake.SetGroup("S0DBA", "U0GROUPIE")
	h.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"PGKILL_TARGETS=t1=" + h.dsn["t1"] + ",t2=" + h.dsn["t2"],
		"SLACK_APP_TOKEN=" + fakeslack.AppToken, "SLACK_BOT_TOKEN=" + fakeslack.BotToken, "SLACK_API_URL=" + h.fake.APIURL(),
		"PGKILL_APPROVERS=U0APPROVER,S0DBA", "PGKILL_LOG_FORMAT=json", "PGKILL_STATE_DSN=" + h.stateDSN,
		"PGKILL_ALERT_CHANNEL=" + haAlerts, "PGKILL_ALERT_AFTER=1s", "PGKILL_IDLE_TX_ALERT_AFTER=0s",
		"PGKILL_POLL_INTERVAL=" + haPoll.String(), "PGKILL_ALERT_EDIT_INTERVAL=1h", "PGKILL_MIN_DURATION=0s",
		"PGKILL_REASON=off", "PGKILL_VERIFY_TIMEOUT=5s",
	}, extra...)
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.all {
			_ = r.cmd.Process.Kill()
			<-r.exited
			if t.Failed() {
				t.Logf("replica %s logs:\n%s", r.name, r.logs.buf.String())
			}
		}
	})
	return h
}

// start starts replica name and waits until it is connected to Slack.
func (h *haEnv) start(t *testing.T, name string) *haReplica {
	t.Helper()
	return h.startWith(t, name, "PGKILL_REPLICA="+name)
}

// startWith starts a replica with env over the set's (no PGKILL_REPLICA
// unless env has one: name then only names it in the test) and waits until
// it is connected to Slack.
func (h *haEnv) startWith(t *testing.T, name string, env ...string) *haReplica {
	t.Helper()
	r := h.launch(t, name, env...)
	h.fake.Eventually(t, 30*time.Second, name+" to connect", func() bool { return len(r.logs.records("connected to Slack", "")) > 0 })
	return r
}

// launch starts a replica without waiting for it.
func (h *haEnv) launch(t *testing.T, name string, env ...string) *haReplica {
	t.Helper()
	r := &haReplica{name: name, listen: closedPort(t), logs: &logBuffer{}, exited: make(chan error, 1)}
	r.cmd = exec.Command(binary, "serve")
	r.cmd.Env = append(append(append([]string(nil), h.env...), "PGKILL_LISTEN="+r.listen), env...)
	r.cmd.Stderr = r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	h.mu.Lock()
	h.all = append(h.all, r)
	h.mu.Unlock()
	return r
}

// kill ends r without a word (SIGKILL) and waits until Slack sees its
// connection gone.
func (h *haEnv) kill(t *testing.T, r *haReplica) {
	t.Helper()
	live := h.fake.Live()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.exited
	r.exited <- nil // for the cleanup
	h.fake.Eventually(t, 15*time.Second, r.name+"'s connection to close", func() bool { return h.fake.Live() < live })
}

// stop ends r as a rollout does (SIGTERM) and waits for it to exit 0.
func (h *haEnv) stop(t *testing.T, r *haReplica) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.exited:
		r.exited <- nil
		if err != nil {
			t.Errorf("%s after SIGTERM: %v", r.name, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit after SIGTERM", r.name)
	}
}

// audits counts the audit records of event (for request id, if set) over
// every replica's logs.
func (h *haEnv) audits(event, id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.all {
		for _, rec := range r.logs.records("audit", event) {
			if id == "" || rec["request_id"] == id {
				n++
			}
		}
	}
	return n
}

// execState runs sql on the state store's database.
func (h *haEnv) execState(t *testing.T, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.stateDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

// queryState runs a one-row query on the state store's database.
func (h *haEnv) queryState(t *testing.T, sql string, args []any, scan func(pgx.Row) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.stateDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := scan(conn.QueryRow(ctx, sql, args...)); err != nil {
		t.Fatal(err)
	}
}

// holder returns who holds target's lease now ("" when nobody does).
func (h *haEnv) holder(t *testing.T, target string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, h.stateDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var who string
	err = conn.QueryRow(ctx, `SELECT holder FROM pgkill_lease WHERE target = $1 AND expires > clock_timestamp()`, target).Scan(&who)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	return who
}

// runaway starts a statement on target that runs until the test ends.
func (h *haEnv) runaway(t *testing.T, target string) *pgtest.Session {
	t.Helper()
	s := pgtest.NewSession(t, h.dsn[target], "ha_runaway")
	s.Run("SELECT pg_sleep(600)")
	waitState(t, s.PID, "active")
	return s
}

// alerts returns the alert messages about pid on target.
func (h *haEnv) alerts(target string, pid int32) []fakeslack.Message {
	return h.fake.Messages(func(m fakeslack.Message) bool {
		return m.Channel == haAlerts && (strings.Contains(m.Text, fmt.Sprintf("on %s: pid %d for ", target, pid)) ||
			strings.Contains(m.Text, fmt.Sprintf("resolved: pid %d on %s ran", pid, target)))
	})
}

// alerted waits for pid's alert and returns it.
func (h *haEnv) alerted(t *testing.T, target string, pid int32) fakeslack.Message {
	t.Helper()
	var m fakeslack.Message
	h.fake.Eventually(t, 30*time.Second, fmt.Sprintf("the alert on pid %d", pid), func() bool {
		ms := h.alerts(target, pid)
		if len(ms) > 0 {
			m = ms[0]
		}
		return len(ms) > 0
	})
	return m
}

// resolved waits until pid's alert shows it resolved.
func (h *haEnv) resolved(t *testing.T, target string, pid int32) {
	t.Helper()
	h.fake.Eventually(t, 30*time.Second, fmt.Sprintf("the alert on pid %d resolved", pid), func() bool {
		ms := h.alerts(target, pid)
		return len(ms) == 1 && strings.Contains(string(ms[0].Blocks), "*Resolved*")
	})
}

// checkOnce checks that pid was alerted in one message, resolved in one
// edit.
func (h *haEnv) checkOnce(t *testing.T, target string, pid int32) {
	t.Helper()
	ms := h.alerts(target, pid)
	if len(ms) != 1 {
		t.Errorf("pid %d on %s: %d alert messages, want 1", pid, target, len(ms))
		return
	}
	n := 0
	for _, v := range ms[0].Versions {
		if strings.Contains(string(v), "*Resolved*") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("pid %d on %s: resolved in %d edits, want 1", pid, target, n)
	}
}

func end(t *testing.T, s *pgtest.Session) {
	t.Helper()
	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", s.PID)
	s.Result(t)
}

// 3 replicas, 2 targets: every runaway query alerted once and resolved once;
// SIGKILL the replica holding t1's lease: another takes t1 over within two
// poll intervals, posts no second alert, and resolves the old one in place.
func TestHAAlertsOnceAndTakeover(t *testing.T) {
	h := newHA(t, "ha_alerts")
	rs := map[string]*haReplica{}
	for _, n := range []string{"r1", "r2", "r3"} {
		rs[n] = h.start(t, n)
	}
	h.figures(t, "ha_alerts")
	q1, q2 := h.runaway(t, "t1"), h.runaway(t, "t2")
	h.alerted(t, "t1", q1.PID)
	h.alerted(t, "t2", q2.PID)

	dead := rs[h.holder(t, "t1")]
	if dead == nil {
		t.Fatalf("t1's lease is held by %q", h.holder(t, "t1"))
	}
	h.kill(t, dead)
	killed := time.Now()
	var next string
	h.fake.Eventually(t, 30*time.Second, "another replica to take t1 over", func() bool {
		next = h.holder(t, "t1")
		return next != "" && next != dead.name
	})
	took := time.Since(killed)
	t.Logf("t1 taken over by %s %v after SIGKILL of %s (poll interval %v)", next, took.Round(time.Millisecond), dead.name, haPoll)
	// The new holder polls t1 (a new runaway query is alerted by it) and has
	// not alerted q1 again.
	q3 := h.runaway(t, "t1")
	h.alerted(t, "t1", q3.PID)
	for _, q := range []*pgtest.Session{q1, q2, q3} {
		end(t, q)
	}
	h.resolved(t, "t1", q1.PID)
	h.resolved(t, "t2", q2.PID)
	h.resolved(t, "t1", q3.PID)
	for _, c := range []struct {
		target string
		q      *pgtest.Session
	}{{"t1", q1}, {"t2", q2}, {"t1", q3}} {
		h.checkOnce(t, c.target, c.q.PID)
	}
	if got := h.fake.Messages(func(m fakeslack.Message) bool { return m.Channel == haAlerts }); len(got) != 3 {
		t.Errorf("%d messages in the alert channel, want 3", len(got))
	}
	if n := len(rs[next].logs.records("open alerts taken back", "")); n == 0 {
		t.Errorf("%s took t1 over without its open alerts", next)
	}
	// /readyz and /metrics of the new holder name t1.
	body := get(t, "http://"+rs[next].listen+"/readyz")
	if !strings.Contains(body, `"leases":["t1"`) && !strings.Contains(body, `"t1"]`) {
		t.Errorf("/readyz of %s: %s", next, body)
	}
	if m := get(t, "http://"+rs[next].listen+"/metrics"); !strings.Contains(m, `pgkill_target_lease_held{target="t1"} 1`) {
		t.Errorf("/metrics of %s lacks the lease of t1", next)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// list runs /pgkill and returns the listing it posts.
func (h *haEnv) list(t *testing.T) fakeslack.Message {
	t.Helper()
	listing := func(m fakeslack.Message) bool {
		return m.Channel == haChannel && m.ThreadTS == "" && strings.HasPrefix(m.Text, "pgkill: ")
	}
	seen := map[string]bool{}
	for _, m := range h.fake.Messages(listing) {
		seen[m.TS] = true
	}
	h.reliably(t, func() string { return h.fake.SlashCommand(t, "/pgkill", "U0REQ", haChannel, "") })
	var m fakeslack.Message
	// The new listing, not the last one before it: other messages (alerts,
	// cards) may come first.
	h.fake.Eventually(t, 20*time.Second, "the listing", func() bool {
		for _, l := range h.fake.Messages(listing) {
			if !seen[l.TS] {
				m = l
				return true
			}
		}
		return false
	})
	return m
}

// reliably sends an envelope until a replica acknowledges it: one sent to
// a replica as it stops is never acknowledged, and Slack's user sees an
// error and presses again. Every action is safe to repeat.
func (h *haEnv) reliably(t *testing.T, send func() string) string {
	t.Helper()
	for i := 0; ; i++ {
		id := send()
		wait := time.After(fakeslack.AckDeadline + 2*time.Second)
		for {
			if _, ok := h.fake.Ack(id); ok {
				return id
			}
			select {
			case <-wait:
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		if i == 5 {
			t.Fatalf("envelope %s: no replica acknowledged it, 6 times", id)
		}
		t.Logf("envelope %s not acknowledged (its replica was stopping): sent again, as Slack's user would", id)
	}
}

// request presses Cancel on s's row of the listing and returns the card.
func (h *haEnv) request(t *testing.T, listing fakeslack.Message, s *pgtest.Session) fakeslack.Message {
	t.Helper()
	h.reliably(t, func() string {
		return h.fake.Click(t, "U0REQ", listing, blocks.ActionCancel, fmt.Sprintf("|%d|", s.PID))
	})
	var card fakeslack.Message
	h.fake.Eventually(t, 20*time.Second, "the card", func() bool {
		for _, m := range h.fake.Messages(func(m fakeslack.Message) bool { return m.ThreadTS == listing.TS }) {
			if strings.Contains(string(m.Blocks), fmt.Sprintf("pid %d", s.PID)) && strings.Contains(string(m.Blocks), blocks.ActionApprove) {
				card = m
				return true
			}
		}
		return false
	})
	return card
}

// requestID reads the request's ID off its card's Approve button.
func requestID(t *testing.T, card fakeslack.Message) string {
	t.Helper()
	_, v, err := fakeslack.FindButton(card, blocks.ActionApprove, "")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// creator names the replica that made request id (its audit record), once
// it has also recorded the card's ts. The records reach the test through
// the replica's stderr pipe, a moment behind the card it posted: wait.
// (A replica killed between posting a card and recording it leaves a card
// nobody can edit; a decision then posts a new card: see repostCard.)
func (h *haEnv) creator(t *testing.T, id string) *haReplica {
	t.Helper()
	var found *haReplica
	h.fake.Eventually(t, 20*time.Second, "the audit record of request "+id, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.all {
			for _, rec := range r.logs.records("audit", "request") {
				if rec["request_id"] == id {
					if rec["replica"] != r.name {
						t.Errorf("audit record of %s names replica %v, written by %s", id, rec["replica"], r.name)
					}
					found = r
				}
			}
			if found == r { // and it recorded its card: killing it now leaves a card others can edit
				for _, rec := range r.logs.records("card recorded", "") {
					if rec["request_id"] == id {
						return true
					}
				}
			}
		}
		return false
	})
	return found
}

// Requests made through a replica that is then killed: a click reaching
// another replica approves it — 20 concurrent clicks spread over 3 replicas
// signal once, one audit record each, the card updated for the approval and
// the outcome only; and a pending one still expires, once.
func TestHARequestsOutliveTheirReplica(t *testing.T) {
	const ttl = 15 * time.Second
	h := newHA(t, "ha_requests", "PGKILL_APPROVAL_TTL="+ttl.String())
	for _, n := range []string{"r1", "r2", "r3"} {
		h.start(t, n)
	}
	q1, q2 := h.runaway(t, "t1"), h.runaway(t, "t2")
	listing := h.list(t)
	a := h.request(t, listing, q1)
	b := h.request(t, listing, q2)
	idA, idB := requestID(t, a), requestID(t, b)

	killed := map[*haReplica]bool{h.creator(t, idA): true, h.creator(t, idB): true}
	for r := range killed {
		h.kill(t, r)
	}
	for i := 0; h.fake.Live() < 3; i++ {
		h.start(t, fmt.Sprintf("r%d", 4+i))
	}

	var wg sync.WaitGroup
	envelopes := make([]string, 20)
	for i := range envelopes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := []string{"U0APPROVER", "U0GROUPIE"}[i%2]
			envelopes[i] = h.fake.Click(t, user, a, blocks.ActionApprove, "")
		}()
	}
	wg.Wait()
	conns := map[int]bool{}
	for _, id := range envelopes {
		h.fake.WaitAck(t, id)
		conns[h.fake.Delivered(id)] = true
	}
	if len(conns) != 3 {
		t.Errorf("the clicks reached %d connections, want 3", len(conns))
	}
	if got := pgtest.SQLState(q1.Result(t)); got != "57014" {
		t.Errorf("q1 SQLSTATE = %q, want 57014 (cancelled)", got)
	}
	h.fake.Eventually(t, 30*time.Second, "the outcome on the card", func() bool {
		m, _ := h.fake.Message(a.Channel, a.TS)
		return h.audits("outcome", idA) > 0 && !strings.Contains(string(m.Blocks), blocks.ActionApprove) && m.Updates >= 2
	})
	if n := h.audits("approve", idA); n != 1 {
		t.Errorf("%d approve records of %s, want 1", n, idA)
	}
	if n := h.audits("outcome", idA); n != 1 {
		t.Errorf("%d outcome records of %s, want 1", n, idA)
	}

	// B: made by a replica now dead, expires on time, once.
	h.fake.Eventually(t, ttl+30*time.Second, "B to expire", func() bool {
		m, _ := h.fake.Message(b.Channel, b.TS)
		return strings.Contains(string(m.Blocks), "*Expired*")
	})
	// The log line travels through a pipe: it may follow the card.
	h.fake.Eventually(t, 10*time.Second, "B's expire record", func() bool { return h.audits("expire", idB) > 0 })
	var lateness time.Duration
	h.queryState(t, `SELECT extract(epoch FROM decided_at - expires_at)::float8 * 1e9 FROM pgkill_request WHERE id = $1`,
		[]any{strings.TrimPrefix(idB, "R")}, func(r pgx.Row) error {
			var ns float64
			err := r.Scan(&ns)
			lateness = time.Duration(ns)
			return err
		})
	t.Logf("B expired %v after its expiry (a sweep every %v)", lateness.Round(time.Millisecond), ttl/20)
	if lateness < 0 {
		t.Errorf("B expired %v early", -lateness)
	}
	if !q2.Running() {
		t.Error("q2 ended: the expired request signalled it")
	}
	if n := h.audits("expire", idB); n != 1 {
		t.Errorf("%d expire records of %s, want 1", n, idB)
	}
	m, _ := h.fake.Message(a.Channel, a.TS)
	if m.Updates > 2 {
		t.Errorf("card A updated %d times, want 2 (approved, outcome)", m.Updates)
	}
	if m, _ := h.fake.Message(b.Channel, b.TS); m.Updates != 1 {
		t.Errorf("card B updated %d times, want 1 (expired)", m.Updates)
	}
}

// A rolling restart of every replica, one by one, while requests are made
// and approved and the targets polled: every approved request signals once,
// every runaway query is alerted once and resolved once.
func TestHARollingRestart(t *testing.T) {
	h := newHA(t, "ha_rolling")
	rs := []*haReplica{h.start(t, "r1"), h.start(t, "r2"), h.start(t, "r3")}
	q1, q2 := h.runaway(t, "t1"), h.runaway(t, "t2")
	h.alerted(t, "t1", q1.PID)
	h.alerted(t, "t2", q2.PID)

	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for i, r := range rs {
			h.stop(t, r)
			if len(r.logs.records("leases handed back", "")) != 1 {
				t.Errorf("%s stopped without handing its leases back", r.name)
			}
			rs[i] = h.start(t, r.name)
			h.fake.Eventually(t, 30*time.Second, "3 connections", func() bool { return h.fake.Live() == 3 })
		}
	}()
	type alerted struct {
		target string
		q      *pgtest.Session
	}
	all := []alerted{{"t1", q1}, {"t2", q2}}
	var ids []string
	for done := false; !done; {
		select {
		case <-restarted:
			done = true
		default:
		}
		target := []string{"t1", "t2"}[len(ids)%2]
		q := h.runaway(t, target)
		card := h.request(t, h.list(t), q)
		id := requestID(t, card)
		h.reliably(t, func() string { return h.fake.Click(t, "U0APPROVER", card, blocks.ActionApprove, "") })
		if got := pgtest.SQLState(q.Result(t)); got != "57014" {
			t.Errorf("request %s: SQLSTATE %q, want 57014", id, got)
		}
		ids = append(ids, id)
		if len(ids)%3 == 0 { // one that runs long enough to be alerted, across restarts
			all = append(all, alerted{target, h.runaway(t, target)})
		}
	}
	t.Logf("%d requests approved during the rolling restart", len(ids))
	h.fake.Eventually(t, 30*time.Second, "every outcome recorded", func() bool {
		for _, id := range ids {
			if h.audits("outcome", id) == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range ids {
		if n, m := h.audits("approve", id), h.audits("outcome", id); n != 1 || m != 1 {
			t.Errorf("request %s: %d approve and %d outcome records, want 1 each", id, n, m)
		}
	}
	for _, a := range all {
		h.alerted(t, a.target, a.q.PID)
		end(t, a.q)
	}
	for _, a := range all {
		h.resolved(t, a.target, a.q.PID)
		h.checkOnce(t, a.target, a.q.PID)
	}
}

// A replica that loses the state store says so on /readyz (503, the
// reason) and polls nothing once its leases would have expired; the others
// take its targets over and alert what runs there, once.
func TestHAStateStoreLost(t *testing.T) {
	h := newHA(t, "ha_lost")
	u, err := url.Parse(h.stateDSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy := pgtest.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	env := h.env
	h.env = append(append([]string(nil), env...), "PGKILL_STATE_DSN="+u.String())
	r1 := h.start(t, "r1")
	h.env = env
	h.fake.Eventually(t, 30*time.Second, "r1 to hold both leases", func() bool {
		return h.holder(t, "t1") == "r1" && h.holder(t, "t2") == "r1"
	})
	q1 := h.runaway(t, "t1")
	h.alerted(t, "t1", q1.PID)
	h.start(t, "r2")

	proxy.Partition(true)
	h.fake.Eventually(t, 30*time.Second, "r1 not ready for want of its state store", func() bool {
		resp, err := http.Get("http://" + r1.listen + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(b.String(), `"state_store":"unreachable since`) &&
			strings.Contains(b.String(), `"leases":[]`)
	})
	h.fake.Eventually(t, 30*time.Second, "r2 to hold both leases", func() bool {
		return h.holder(t, "t1") == "r2" && h.holder(t, "t2") == "r2"
	})
	q2 := h.runaway(t, "t2")
	h.alerted(t, "t2", q2.PID)
	end(t, q1)
	end(t, q2)
	h.resolved(t, "t1", q1.PID)
	h.resolved(t, "t2", q2.PID)
	h.checkOnce(t, "t1", q1.PID)
	h.checkOnce(t, "t2", q2.PID)
}

// Several replicas without a state store alert each on its own: the one
// that hears from Slack that it is not alone says so.
func TestHANoStateStoreWarns(t *testing.T) {
	h := newHA(t, "ha_nostore")
	var env []string
	for _, kv := range h.env {
		if !strings.HasPrefix(kv, "PGKILL_STATE_DSN=") {
			env = append(env, kv)
		}
	}
	h.env = env
	h.start(t, "r1")
	r2 := h.start(t, "r2")
	h.fake.Eventually(t, 10*time.Second, "r2's warning", func() bool {
		for _, r := range r2.logs.records("Slack reports several connections of this app and pgkill has no state store: each replica alerts on its own (twice, three times …) and knows only its own requests; set PGKILL_STATE_DSN on every replica", "") {
			if r["level"] == "WARN" && r["num_connections"] == float64(2) {
				return true
			}
		}
		return false
	})
}

// figures logs what 3 idle replicas cost: connections to the targets and to
// the state store, and state-store transactions per poll interval (from
// pg_stat_database, over a window of 10 poll intervals). A measure for
// README, not an assertion.
func (h *haEnv) figures(t *testing.T, stateDB string) {
	t.Helper()
	count := func(sql string, args ...any) int { return pgtest.Int(t, sql, args...) }
	// Connections are opened lazily: wait until every replica has polled.
	h.fake.Eventually(t, 30*time.Second, "both targets polled", func() bool {
		return h.holder(t, "t1") != "" && h.holder(t, "t2") != ""
	})
	xacts := func() int {
		pgtest.Exec(t, "SELECT pg_stat_clear_snapshot()")
		return count("SELECT (xact_commit + xact_rollback)::int FROM pg_stat_database WHERE datname = $1", stateDB)
	}
	before := xacts()
	start := time.Now()
	time.Sleep(10 * haPoll)
	polls := float64(time.Since(start)) / float64(haPoll)
	after := xacts()
	t.Logf("figures, 3 replicas, 2 targets, idle: connections to the targets %d (t1 %d, t2 %d), to the state store %d; state-store transactions %.1f per poll interval for all replicas",
		count("SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'pgkill'"),
		count("SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'pgkill' AND usename = 'ha_t1'"),
		count("SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'pgkill' AND usename = 'ha_t2'"),
		count("SELECT count(*)::int FROM pg_stat_activity WHERE application_name = 'pgkill-state'"),
		float64(after-before)/polls)
}

// A replica killed while its card edits wait in its outbox (Slack's
// chat.update hanging) leaves the request done in the state store and the
// card as it was; another replica's sweep shows the outcome on the card
// once request.ShowDue has passed without its showing confirmed.
func TestHACardShownAfterItsReplicaDies(t *testing.T) {
	h := newHA(t, "ha_show")
	for _, n := range []string{"r1", "r2"} {
		h.start(t, n)
	}
	q := h.runaway(t, "t1")
	card := h.request(t, h.list(t), q)
	id := requestID(t, card)
	release := h.fake.Stall("chat.update")
	defer release()
	h.reliably(t, func() string { return h.fake.Click(t, "U0APPROVER", card, blocks.ActionApprove, "") })
	if got := pgtest.SQLState(q.Result(t)); got != "57014" {
		t.Fatalf("the query's SQLSTATE = %q, want 57014 (cancelled)", got)
	}
	var carrier *haReplica
	h.fake.Eventually(t, 20*time.Second, "the outcome's audit record", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, r := range h.all {
			for _, rec := range r.logs.records("audit", "outcome") {
				if rec["request_id"] == id {
					carrier = r
				}
			}
		}
		return carrier != nil
	})
	h.kill(t, carrier)
	closed := time.Now()
	release()
	if m, _ := h.fake.Message(card.Channel, card.TS); !strings.Contains(string(m.Blocks), blocks.ActionApprove) {
		t.Fatalf("the card changed while chat.update hung: %s", m.Blocks)
	}
	h.fake.Eventually(t, request.ShowDue+30*time.Second, "the outcome on the card, shown by the other replica", func() bool {
		m, _ := h.fake.Message(card.Channel, card.TS)
		return strings.Contains(string(m.Blocks), "ended") && !strings.Contains(string(m.Blocks), blocks.ActionApprove)
	})
	t.Logf("the card showed the outcome %v after its replica was killed (request.ShowDue %v)", time.Since(closed).Round(100*time.Millisecond), request.ShowDue)
}
