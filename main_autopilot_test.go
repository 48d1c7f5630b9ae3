package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// The autopilot with the built binary, real PostgreSQL and the Slack
// stand-in: rules in a policy file, their countdown cards in the alert
// channel, carried out by whichever replica sweeps first.

// autopilotRules match sessions by application name, each rule its own.
const autopilotRules = `autopilot:
  - name: dry
    match: {app: ap_dry, duration: 1s}
    countdown: 2s
  - name: act
    match: {app: ap_act, duration: 1s}
    mode: act
    countdown: 15s
  - name: stop
    match: {app: ap_stop, duration: 1s}
    mode: act
    countdown: 1h
  - name: now
    match: {app: ap_now, duration: 1s}
    mode: act
    countdown: 1h
  - name: ident
    match: {app: ap_ident, duration: 1s}
    mode: act
    countdown: 15s
  - name: brk
    match: {app: ap_brk, duration: 1s}
    countdown: 1h
    limit: 2 per 1h
  - name: paused
    targets: [t2]
    match: {app: ap_paused, duration: 1s}
    countdown: 1h
  - name: control
    targets: [t1]
    match: {app: ap_paused, duration: 1s}
    countdown: 1h
`

func newAutopilot(t *testing.T, state string) *haEnv {
	t.Helper()
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte(autopilotRules), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sweep every second; alerts only after an hour: the rules' cards
	// have the alert channel to themselves.
	h := newHA(t, state, "PGKILL_POLICY_FILE="+policy, "PGKILL_APPROVAL_TTL=20s", "PGKILL_ALERT_AFTER=1h")
	h.execState(t, `DO $$ BEGIN
  IF to_regclass('pgkill_pause') IS NOT NULL THEN TRUNCATE pgkill_pause; END IF;
END $$`)
	return h
}

// session starts a statement on target as app that runs until the test
// ends (or a signal ends it).
func (h *haEnv) session(t *testing.T, target, app string) *pgtest.Session {
	t.Helper()
	s := pgtest.NewSession(t, h.dsn[target], app)
	s.Run("SELECT pg_sleep(600)")
	waitState(t, s.PID, "active")
	return s
}

// autoCards returns the cards of rule about pid in the alert channel.
func (h *haEnv) autoCards(rule string, pid int32) []fakeslack.Message {
	return h.fake.Messages(func(m fakeslack.Message) bool {
		return m.Channel == haAlerts && strings.Contains(string(m.Blocks), "autopilot rule `"+rule+"`") &&
			strings.Contains(string(m.Blocks), fmt.Sprintf("pid %d ", pid))
	})
}

// autoCard waits until rule's card about pid says want, and returns it.
func (h *haEnv) autoCard(t *testing.T, rule string, pid int32, want string) fakeslack.Message {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cards := h.autoCards(rule, pid)
		for _, m := range cards {
			if strings.Contains(string(m.Blocks), want) {
				return m
			}
		}
		if time.Now().After(deadline) {
			for _, m := range cards {
				t.Logf("rule %s's card %s on pid %d: %s", rule, m.TS, pid, m.Blocks)
			}
			t.Fatalf("rule %s's card on pid %d never said %q (%d cards)", rule, pid, want, len(cards))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// autoID reads the request's ID off a rule's card (its Stop button).
func autoID(t *testing.T, card fakeslack.Message) string {
	t.Helper()
	_, v, err := fakeslack.FindButton(card, blocks.ActionStop, "")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// stateOf reads request id's state from the state store.
func (h *haEnv) stateOf(t *testing.T, id string) string {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "R"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var state string
	h.queryState(t, `SELECT state FROM pgkill_request WHERE id = $1`, []any{n}, func(r pgx.Row) error { return r.Scan(&state) })
	return state
}

func alive(t *testing.T, pid int32) bool {
	t.Helper()
	return pgtest.Int(t, "SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1", pid) == 1
}

// auditsOf returns the audit records of event for request id, over every
// replica's logs.
func (h *haEnv) auditsOf(event, id string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, r := range h.all {
		for _, rec := range r.logs.records("audit", event) {
			if rec["request_id"] == id {
				out = append(out, rec)
			}
		}
	}
	return out
}

// Three replicas. A dry run posts and signals nothing; Stop before the
// deadline signals nothing; Do it now signals at once; at the deadline the
// rule's terminate is sent exactly once although the replica that posted
// the card was killed during the countdown; a session whose statement
// changed during the countdown is spared; the breaker trips at its limit.
func TestAutopilotAcrossReplicas(t *testing.T) {
	h := newAutopilot(t, "autopilot_e2e")
	for _, n := range []string{"a1", "a2", "a3"} {
		h.start(t, n)
	}
	dry, act, stop, now, ident := h.session(t, "t1", "ap_dry"), h.session(t, "t1", "ap_act"), h.session(t, "t1", "ap_stop"),
		h.session(t, "t1", "ap_now"), h.session(t, "t1", "ap_ident")
	brk := []*pgtest.Session{h.session(t, "t1", "ap_brk"), h.session(t, "t1", "ap_brk"), h.session(t, "t1", "ap_brk")}

	// The replica that posted the act card is killed while it counts down,
	// once it has recorded its card (killed before, it leaves a card nobody
	// can stop: that request is withdrawn at its deadline, unsignalled).
	actID := autoID(t, h.autoCard(t, "act", act.PID, "Stop"))
	identID := autoID(t, h.autoCard(t, "ident", ident.PID, "Stop"))
	h.autoCard(t, "dry", dry.PID, "nothing was signalled (its mode is dry-run)") // shown before any replica dies
	// So is the breaker's card: one still queued in a replica killed before
	// Slack has it is lost (the breaker itself holds, in the store).
	h.fake.Eventually(t, 60*time.Second, "the breaker card, before any replica dies", func() bool {
		return len(h.fake.Messages(func(m fakeslack.Message) bool {
			return m.Channel == haAlerts && strings.Contains(m.Text, "autopilot rule brk stopped on t1")
		})) == 1
	})
	poster := h.creator(t, actID)
	h.creator(t, identID)
	h.kill(t, poster)
	if st := h.stateOf(t, actID); st != "pending" {
		t.Fatalf("the countdown of %s ended (%s) before its replica was killed: the test proves nothing", actID, st)
	}

	// The statement of ident changes during its countdown: same pid, another
	// statement, an application no rule matches.
	end(t, ident)
	ident.Exec(t, "SET application_name = 'ap_other'")
	ident.Run("SELECT pg_sleep(600)")
	waitState(t, ident.PID, "active")
	if st := h.stateOf(t, identID); st != "pending" {
		t.Fatalf("the countdown of %s ended (%s) before the statement changed: the test proves nothing", identID, st)
	}

	stopCard := h.autoCard(t, "stop", stop.PID, "Stop")
	h.reliably(t, func() string { return h.fake.Click(t, "U0STRANGER", stopCard, blocks.ActionStop, "") })
	h.autoCard(t, "stop", stop.PID, "Stopped")

	nowCard := h.autoCard(t, "now", now.PID, "Do it now")
	h.reliably(t, func() string { return h.fake.Click(t, "U0REQ", nowCard, blocks.ActionApprove, "") }) // not an approver
	h.reliably(t, func() string { return h.fake.Click(t, "U0APPROVER", nowCard, blocks.ActionApprove, "") })
	h.autoCard(t, "now", now.PID, "done now by")
	if err := now.Result(t); pgtest.SQLState(err) != "57P01" {
		t.Errorf("Do it now: the session got %v, want a terminate (57P01)", err)
	}

	done := h.autoCard(t, "act", act.PID, "The session ended")
	if err := act.Result(t); pgtest.SQLState(err) != "57P01" {
		t.Errorf("at the deadline: the session got %v, want a terminate (57P01)", err)
	}
	if outs := h.auditsOf("outcome", actID); len(outs) != 1 || outs[0]["actor"] != "autopilot:act" || outs[0]["result"] != "ended" {
		t.Errorf("outcome audit records of %s: %v, want one, by autopilot:act", actID, outs)
	}
	if reqs := h.fake.Messages(func(m fakeslack.Message) bool {
		return m.TS != done.TS && m.Channel == haAlerts && strings.Contains(string(m.Blocks), "autopilot rule `act`")
	}); len(reqs) != 0 {
		t.Errorf("the rule fired again after the takeover: %d more cards", len(reqs))
	}

	h.autoCard(t, "ident", ident.PID, "Nothing signalled")
	if !alive(t, ident.PID) || !ident.Running() {
		t.Error("the session whose statement changed during the countdown was signalled")
	}

	h.fake.Eventually(t, 60*time.Second, "the breaker card", func() bool {
		return len(h.fake.Messages(func(m fakeslack.Message) bool {
			return m.Channel == haAlerts && strings.Contains(m.Text, "autopilot rule brk stopped on t1")
		})) == 1
	})
	cards := 0
	for _, s := range brk {
		cards += len(h.autoCards("brk", s.PID))
	}
	if cards != 2 {
		t.Errorf("rule brk (limit 2 per 1h) posted %d cards, want 2", cards)
	}
	if st := h.stateOf(t, autoID(t, stopCard)); st != "denied" || !alive(t, stop.PID) || !alive(t, dry.PID) {
		t.Errorf("stopped request %s: %s; stopped session alive %v; dry run's alive %v", autoID(t, stopCard), st, alive(t, stop.PID), alive(t, dry.PID))
	}
}

// A pause of a target holds over a restart of every replica: its rule
// posts nothing there until an approver resumes it.
func TestAutopilotPauseOverRestart(t *testing.T) {
	h := newAutopilot(t, "autopilot_pause")
	r := h.start(t, "p1")
	h.reliably(t, func() string { return h.fake.SlashCommand(t, "/pgkill", "U0REQ", haChannel, "autopilot pause t2") })
	h.reliably(t, func() string { return h.fake.SlashCommand(t, "/pgkill", "U0APPROVER", haChannel, "autopilot pause t2") })
	h.fake.Eventually(t, 30*time.Second, "the pause notice", func() bool {
		return len(h.fake.Messages(func(m fakeslack.Message) bool {
			return m.Channel == haAlerts && strings.Contains(m.Text, "the autopilot was paused on t2 by <@U0APPROVER>")
		})) == 1
	})
	h.stop(t, r)
	h.start(t, "p2")
	s := h.session(t, "t2", "ap_paused")
	control := h.session(t, "t1", "ap_paused")
	h.autoCard(t, "control", control.PID, "Dry run") // the rules are evaluated after the restart
	h.waitPollsOf(t, "t2", 3*time.Second)
	if n := len(h.autoCards("paused", s.PID)); n != 0 {
		t.Fatalf("a paused rule posted %d cards after the restart", n)
	}
	h.reliably(t, func() string {
		return h.fake.SlashCommand(t, "/pgkill", "U0APPROVER", haChannel, "autopilot resume t2")
	})
	h.autoCard(t, "paused", s.PID, "Dry run")
	if n := len(h.fake.Messages(func(m fakeslack.Message) bool {
		return strings.Contains(m.Text, "the autopilot was paused") || strings.Contains(m.Text, "the autopilot was resumed")
	})); n != 2 {
		t.Errorf("%d pause/resume notices, want 2 (the non-approver's pause was refused)", n)
	}
}

// pgkill autopilot test evaluates the rules against the live server and
// says per rule what it would do and why, signalling nothing; a policy
// file with an error is refused with its line.
func TestCLIAutopilotTest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `autopilot:
  - name: long
    match: {duration: 1s, app: "ap_cli_run*"}
    mode: act
    countdown: 30s
  - name: idle
    match: {state: idle in transaction, duration: 1s, app: "ap_cli_idle"}
  - name: never
    match: {duration: 1s, app: "ap_cli_nobody"}
`)
	run := sleeper(t, "ap_cli_run")
	idle := pgtest.NewSession(t, pgtest.DSN(t), "ap_cli_idle")
	idle.Exec(t, "BEGIN")
	idle.Exec(t, "SELECT 1")
	for _, pid := range []int32{run.PID, idle.PID} { // both past the rules' 1s
		deadline := time.Now().Add(30 * time.Second)
		for pgtest.Int(t, "SELECT count(*)::int FROM pg_stat_activity WHERE pid = $1 AND clock_timestamp() - state_change > interval '1.2 s'", pid) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d never ran 1.2s", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	env := []string{"DATABASE_URL=" + pgtest.DSN(t), "PGKILL_POLICY_FILE=" + good}
	r := pgkill(t, env, "", "autopilot", "test")
	for _, want := range []string{
		fmt.Sprintf("would terminate pid %d on default in 30s", run.PID),
		fmt.Sprintf("dry run: would post that it would terminate pid %d on default in 1m", idle.PID),
		"idle in transaction for",
		"never (dry-run) on every target: terminate when app ap_cli_nobody, for ≥ 1s",
		"matches nothing now (on default)",
		"Nothing was signalled.",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("autopilot test lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.code != 0 || !run.Running() || !alive(t, idle.PID) {
		t.Errorf("exit %d; the matched sessions still run: %v %v\n%s", r.code, run.Running(), alive(t, idle.PID), r.stderr)
	}

	bad := write("bad.yaml", "autopilot:\n  - name: x\n    match: {user: etl}\n")
	r = pgkill(t, []string{"DATABASE_URL=" + pgtest.DSN(t), "PGKILL_POLICY_FILE=" + bad}, "", "autopilot", "test")
	if r.code != 1 || !strings.Contains(r.stderr, "line 2") || !strings.Contains(r.stderr, "needs a duration:") {
		t.Errorf("a rule without a time condition: exit %d\n%s", r.code, r.stderr)
	}
	r = pgkill(t, []string{"DATABASE_URL=" + pgtest.DSN(t)}, "", "autopilot", "test")
	if r.code != 1 || !strings.Contains(r.stdout, "No autopilot rule is declared") {
		t.Errorf("no rules: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = pgkill(t, env, "", "autopilot", "run")
	if r.code != 2 || !strings.Contains(r.stderr, "the one subcommand is test") {
		t.Errorf("autopilot run: exit %d\n%s", r.code, r.stderr)
	}
}

// SIGHUP reads the policy file again: a rule added fires without a
// restart; a file that does not parse leaves the rules in force, and the
// log says why with the line.
func TestAutopilotReloadOnSIGHUP(t *testing.T) {
	h := newAutopilot(t, "autopilot_hup")
	policy := ""
	for _, e := range h.env {
		if v, ok := strings.CutPrefix(e, "PGKILL_POLICY_FILE="); ok {
			policy = v
		}
	}
	r := h.start(t, "hup")
	hup := func(body string) {
		t.Helper()
		if err := os.WriteFile(policy, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	late := "  - name: late\n    match: {app: ap_late, duration: 1s}\n    countdown: 1h\n"
	hup(autopilotRules + late)
	h.fake.Eventually(t, 30*time.Second, "the reload", func() bool {
		for _, rec := range r.logs.records("SIGHUP: policy reloaded", "") {
			if rec["autopilot_rules"] == float64(9) {
				return true
			}
		}
		return false
	})
	h.autoCard(t, "late", h.session(t, "t1", "ap_late").PID, "Dry run")

	hup(autopilotRules + late + "  - name: broken\n    match: {user: x}\n")
	h.fake.Eventually(t, 30*time.Second, "the refused reload", func() bool {
		for _, rec := range r.logs.records("SIGHUP: the policy was not reloaded; the one in force stays", "") {
			line := fmt.Sprintf("line %d", strings.Count(autopilotRules+late, "\n")+1)
			if e, _ := rec["error"].(string); strings.Contains(e, line) && strings.Contains(e, `rule "broken" needs a duration:`) {
				return true
			}
		}
		return false
	})
	h.autoCard(t, "late", h.session(t, "t1", "ap_late").PID, "Dry run")
}
