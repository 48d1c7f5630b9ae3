package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg/pgtest"
)

var binary string // pgkill built once for the whole package

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgkill-bin-*")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "pgkill")
	if b := os.Getenv("PGKILL_TEST_BINARY"); b != "" {
		binary = b // another build (an older commit's): to see a test fail on the code it fixes
	} else if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// pgkill runs the built binary with only the given environment.
func pgkill(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

// sleeper starts a statement that runs until the test ends (pg_sleep(600):
// cleanup cancels it), and waits until the server shows it active.
func sleeper(t *testing.T, app string) *pgtest.Session {
	t.Helper()
	s := pgtest.NewSession(t, pgtest.DSN(t), app)
	s.Run("SELECT pg_sleep(600)")
	waitState(t, s.PID, "active")
	return s
}

// waitState waits (with a deadline, not a sleep) until pid's state is state.
func waitState(t *testing.T, pid int32, state string) {
	t.Helper()
	waitActivity(t, pid, "state", state)
}

// waitActivity waits until pg_stat_activity's column for pid reads want.
func waitActivity(t *testing.T, pid int32, column, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var got string
		err := conn.QueryRow(ctx, "SELECT coalesce("+column+"::text, '') FROM pg_stat_activity WHERE pid = $1", pid).Scan(&got)
		if err == nil && got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pid %d: %s never became %s (last %q, %v)", pid, column, want, got, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestCLIList(t *testing.T) {
	s := sleeper(t, "cli_list")
	env := []string{"DATABASE_URL=" + pgtest.DSN(t)}

	r := pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_li*")
	if r.code != 0 || !strings.Contains(r.stdout, "TARGET") || !strings.Contains(r.stdout, "pg_sleep(600)") ||
		!strings.Contains(r.stdout, fmt.Sprint(s.PID)) || !strings.Contains(r.stdout, "default") {
		t.Errorf("list table: %+v", r)
	}
	r = pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_list", "-json")
	var out struct {
		Targets  []struct{ Target, Error string }
		Backends []struct {
			PID             int32   `json:"pid"`
			Application     string  `json:"application"`
			DurationSeconds float64 `json:"duration_seconds"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
		t.Fatalf("json: %v\n%+v", err, r)
	}
	if len(out.Backends) != 1 || out.Backends[0].PID != s.PID || out.Backends[0].Application != "cli_list" {
		t.Errorf("json backends = %+v", out.Backends)
	}
	// Full text by default (the user holds the credentials); -redact hides
	// literals as Slack does.
	if r := pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_list", "-redact"); r.code != 0 || !strings.Contains(r.stdout, "pg_sleep(?)") || strings.Contains(r.stdout, "pg_sleep(600)") {
		t.Errorf("list -redact: %+v", r)
	}
	r = pgkill(t, env, "", "list", "-min", "1h", "-app", "cli_list")
	if r.code != 0 || r.stdout != "no queries ≥ 1h on default (app=cli_list)\n" {
		t.Errorf("empty list: %+v", r)
	}
	r = pgkill(t, env, "", "list", "-state", "sleeping")
	if r.code != 2 || !strings.Contains(r.stderr, "state must be one of active: sessions running a statement now") {
		t.Errorf("bad state: %+v", r)
	}
}

// A target that could not be read is never an all-clear: stdout names it
// and says why, and the exit code is 3, whatever the cause.
func TestCLIListUnreadable(t *testing.T) {
	refused := closedPort(t)
	hanging := hangingPort(t)
	tests := []struct {
		name string
		env  []string
		why  string
	}{
		{"unknown role with a password", []string{"DATABASE_URL=" + strings.Replace(pgtest.DSN(t), "postgres@", "nosuchrole:WRONGSECRET@", 1)}, `role "nosuchrole" does not exist`},
		{"refused port", []string{"DATABASE_URL=postgres://u:WRONGSECRET@" + refused + "/db?sslmode=disable"}, "connection refused"},
		{"unknown host", []string{"DATABASE_URL=postgres://u:WRONGSECRET@pgkill-no-such-host.invalid/db?sslmode=disable"}, "lookup pgkill-no-such-host.invalid"},
		// As a server in a lock pile-up does: -wait bounds it.
		{"hanging host", []string{"DATABASE_URL=postgres://u:WRONGSECRET@" + hanging + "/db?sslmode=disable", "PGKILL_CONNECT_TIMEOUT=1s"}, "not started the session"},
		{"no configuration", nil, "COULD NOT BE READ: no target is configured (set PGKILL_TARGETS or DATABASE_URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := pgkill(t, tc.env, "", "list", "-wait", "2s")
			if r.code != 3 || !strings.Contains(r.stdout, "default: COULD NOT BE READ: ") || !strings.Contains(r.stdout, tc.why) ||
				!strings.Contains(r.stdout, "nothing could be listed: no target answered") {
				t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, "no queries") || strings.Contains(r.stdout+r.stderr, "WRONGSECRET") {
				t.Errorf("all-clear or password printed:\n%s%s", r.stdout, r.stderr)
			}
			// One attempt, waited out with a line that says why.
			if tc.name == "hanging host" && !strings.Contains(r.stderr, "pgkill: default: the server accepted the connection 1s ago but has not started the session; waiting up to 2s (-wait): in a lock pile-up") {
				t.Errorf("no progress line:\n%s", r.stderr)
			}
		})
	}
}

func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// hangingPort accepts connections and never answers, like a host behind a
// black-holing firewall after the handshake.
func hangingPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l.Addr().String()
}

func TestCLIListDeadTarget(t *testing.T) {
	s := sleeper(t, "cli_dead")
	env := []string{
		"PGKILL_TARGETS=good=" + pgtest.DSN(t) + ",down=postgres://u:topsecret@" + closedPort(t) + "/db?sslmode=disable",
		"PGKILL_CONNECT_TIMEOUT=1s",
	}
	r := pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_dead")
	if r.code != 3 || !strings.Contains(r.stdout, fmt.Sprint(s.PID)) || !strings.Contains(r.stdout, "down: COULD NOT BE READ: ") {
		t.Errorf("list with a dead target: %+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "topsecret") {
		t.Errorf("password printed: %+v", r)
	}
}

func TestCLICancel(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t), "PGKILL_VERIFY_TIMEOUT=5s"}
	tests := []struct {
		name  string
		args  func(pid int32) []string
		stdin string
		code  int
		state string // victim's SQLSTATE, "" = still running
		say   string
	}{
		{"yes flag after pid", func(p int32) []string { return []string{"cancel", fmt.Sprint(p), "-yes"} }, "", 0, "57014", "ended: query ended"},
		{"y flag", func(p int32) []string { return []string{"cancel", "-y", fmt.Sprint(p)} }, "", 0, "57014", "ended: query ended"},
		{"answered y", func(p int32) []string { return []string{"cancel", "-target", "default", fmt.Sprint(p)} }, "y\n", 0, "57014", "ended"},
		{"no answer", func(p int32) []string { return []string{"cancel", fmt.Sprint(p)} }, "", 5, "", "not confirmed; nothing signalled"},
		{"answered n", func(p int32) []string { return []string{"cancel", fmt.Sprint(p)} }, "n\n", 5, "", "not confirmed; nothing signalled"},
		{"terminate", func(p int32) []string { return []string{"terminate", "-yes", fmt.Sprint(p)} }, "", 0, "57P01", "ended: session ended"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sleeper(t, "cli_cancel")
			r := pgkill(t, env, tc.stdin, tc.args(s.PID)...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.say) || !strings.Contains(r.stdout, "pg_sleep(600)") {
				t.Errorf("%+v", r)
			}
			if tc.state == "" {
				if !s.Running() {
					t.Errorf("victim ended: %v", s.Result(t))
				}
				return
			}
			if got := pgtest.SQLState(s.Result(t)); got != tc.state {
				t.Errorf("victim SQLSTATE = %q, want %q", got, tc.state)
			}
		})
	}
}

// Several pids: each is read, shown and reported on its own line; a
// statement that catches the cancel is still running (exit 4), and the next
// step is printed as a command.
func TestCLICancelSeveral(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t), "PGKILL_VERIFY_TIMEOUT=1s"}
	plain := sleeper(t, "cli_several")
	stubborn := pgtest.NewSession(t, pgtest.DSN(t), "cli_several")
	// It catches one cancel: terminate it before the session's cleanup waits.
	t.Cleanup(func() { pgtest.Exec(t, "SELECT pg_terminate_backend($1)", stubborn.PID) })
	stubborn.Run(`DO $$ BEGIN PERFORM pg_sleep(600); EXCEPTION WHEN query_canceled THEN PERFORM pg_sleep(600); END $$`)
	waitState(t, stubborn.PID, "active")
	r := pgkill(t, env, "", "cancel", "-y", fmt.Sprint(plain.PID), fmt.Sprint(stubborn.PID), "999999")
	for _, s := range []string{
		fmt.Sprintf("pid %d on default: ended: query ended", plain.PID),
		fmt.Sprintf("pid %d on default: STILL RUNNING", stubborn.PID),
		fmt.Sprintf("Next: pgkill terminate -target default %d", stubborn.PID),
		"pid 999999 on default: no client backend with that pid",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q", s)
		}
	}
	if r.code != 4 {
		t.Errorf("exit %d, want 4", r.code)
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	if got := pgtest.SQLState(plain.Result(t)); got != "57014" {
		t.Errorf("plain victim SQLSTATE = %q", got)
	}
	if !stubborn.Running() {
		t.Errorf("stubborn statement ended: %v", stubborn.Result(t))
	}
}

// Cancel and terminate say the same true thing about a plain idle session,
// and neither signals it.
func TestCLIIdleSessionOneStory(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t)}
	s := pgtest.NewSession(t, pgtest.DSN(t), "cli_idle")
	s.Exec(t, "SELECT 1")
	waitState(t, s.PID, "idle")
	want := fmt.Sprintf("pid %d: nothing to end: it is idle (no statement running, no transaction open); pgkill spares plain idle sessions on purpose; nothing signalled", s.PID)
	for _, action := range []string{"cancel", "terminate"} {
		r := pgkill(t, env, "", action, "-y", fmt.Sprint(s.PID))
		if r.code != 5 || !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, "signal sent") {
			t.Errorf("%s: exit %d\n%s%s", action, r.code, r.stdout, r.stderr)
		}
	}
	s.Exec(t, "SELECT 2") // still connected: nothing was signalled
}

// A query's control characters are shown, never sent to the terminal.
func TestCLIControlCharacters(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t)}
	s := pgtest.NewSession(t, pgtest.DSN(t), "cli_escape")
	s.Run("SELECT pg_sleep(600) /* \x1b[2K\x1b[1Aterminate pid 1? */")
	waitState(t, s.PID, "active")
	for _, args := range [][]string{{"list", "-min", "0s", "-app", "cli_escape", "-wide"}, {"terminate", fmt.Sprint(s.PID)}} {
		r := pgkill(t, env, "", args...)
		if strings.Contains(r.stdout, "\x1b") || !strings.Contains(r.stdout, `\x1b[2K\x1b[1Aterminate pid 1?`) {
			t.Errorf("%v:\n%q", args, r.stdout)
		}
	}
}

// A lock chain: the holder is listed first as the root blocker, and the
// terminate confirmation says what it blocks and that its transaction is
// rolled back. The chain is held by locks, not by timing.
func TestCLIBlockingChain(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t)}
	pgtest.Exec(t, "CREATE TABLE IF NOT EXISTS cli_chain (id int)")
	holder := pgtest.NewSession(t, pgtest.DSN(t), "cli_chain")
	holder.Exec(t, "BEGIN")
	holder.Exec(t, "LOCK TABLE cli_chain")
	t.Cleanup(func() { holder.Exec(t, "ROLLBACK") })
	waiter := pgtest.NewSession(t, pgtest.DSN(t), "cli_chain")
	waiter.Run("SELECT count(*) FROM cli_chain")
	waitActivity(t, waiter.PID, "wait_event_type", "Lock")

	r := pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_chain", "-blocking")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.Contains(lines[1], fmt.Sprint(holder.PID)) || !strings.Contains(lines[1], "ROOT blocks 1") ||
		!strings.Contains(lines[2], fmt.Sprintf("waits on %d", holder.PID)) {
		t.Errorf("list -blocking:\n%s%s", r.stdout, r.stderr)
	}
	r = pgkill(t, env, "n\n", "terminate", fmt.Sprint(holder.PID))
	for _, s := range []string{"blocks 1 session (1 directly): ending it frees it", "its open transaction (open for ", ") is rolled back",
		fmt.Sprintf("terminate pid %d on default? [y/N]", holder.PID), "not confirmed; nothing signalled"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("terminate confirmation lacks %q:\n%s", s, r.stdout)
		}
	}
	if r.code != 5 {
		t.Errorf("exit %d, want 5", r.code)
	}
}

// A role without pg_read_all_stats cannot see other roles' sessions: list
// counts them, cancel says pgkill cannot see the pid (not that it ended),
// and doctor exits 1 with the missing grant.
func TestCLIHiddenSessions(t *testing.T) {
	dsn := pgtest.Role(t, "cli_nostats", "pg_signal_backend")
	env := []string{"DATABASE_URL=" + dsn}
	s := sleeper(t, "cli_hidden") // the superuser's session

	r := pgkill(t, env, "", "list", "-min", "0s")
	if r.code != 0 || !regexp.MustCompile(`default: [1-9]\d* sessions? of other roles hidden from pgkill's role`).MatchString(r.stdout) ||
		!strings.Contains(r.stdout, "GRANT pg_read_all_stats") || strings.Contains(r.stdout, fmt.Sprint(s.PID)) {
		t.Errorf("list as cli_nostats: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = pgkill(t, env, "", "cancel", "-y", fmt.Sprint(s.PID))
	if r.code != 5 || !strings.Contains(r.stdout, `pgkill's role "cli_nostats" cannot see`) || !strings.Contains(r.stdout, "GRANT pg_read_all_stats TO cli_nostats") ||
		!strings.Contains(r.stdout, "nothing signalled") || strings.Contains(r.stdout, "ended") {
		t.Errorf("cancel of a hidden pid: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !s.Running() {
		t.Errorf("hidden session ended: %v", s.Result(t))
	}
	r = pgkill(t, env, "", "doctor")
	if r.code != 1 || !strings.Contains(r.stdout, "MISSING: ") || !strings.Contains(r.stdout, "pg_read_all_stats") {
		t.Errorf("doctor as cli_nostats: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A cancel inside a transaction block says what PostgreSQL did with the
// locks: an aborted transaction releases them, one with a savepoint keeps
// the outer transaction's, counted from pg_locks.
func TestCLICancelInTransactionLocks(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t), "PGKILL_VERIFY_TIMEOUT=5s"}
	pgtest.Exec(t, "CREATE TABLE IF NOT EXISTS cli_locks (id int)")
	for _, tc := range []struct {
		name, sql string
		say       *regexp.Regexp
	}{
		{"plain transaction", "BEGIN; LOCK TABLE cli_locks; SELECT pg_sleep(600)",
			regexp.MustCompile(`ended: query ended \S+ after the signal; its transaction is still open \(aborted\) but holds no locks`)},
		{"savepoint", "BEGIN; LOCK TABLE cli_locks; SAVEPOINT s; SELECT pg_sleep(600)",
			regexp.MustCompile(`ended: query ended \S+ after the signal; its transaction is still open \(aborted\) and holds [1-9]\d* locks? until the client rolls back; to end it: pgkill terminate -target default \d+`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := pgtest.NewSession(t, pgtest.DSN(t), "cli_locks")
			s.Run(tc.sql)
			waitState(t, s.PID, "active")
			r := pgkill(t, env, "", "cancel", "-y", fmt.Sprint(s.PID))
			if r.code != 0 || !tc.say.MatchString(r.stdout) {
				t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if got := pgtest.SQLState(s.Result(t)); got != "57014" {
				t.Errorf("SQLSTATE %q", got)
			}
			s.Exec(t, "ROLLBACK")
		})
	}
}

func TestCLIErrors(t *testing.T) {
	dsn := pgtest.DSN(t)
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		say  string
	}{
		{"bad duration", []string{"PGKILL_MIN_DURATION=soon"}, []string{"list"}, 1, `PGKILL_MIN_DURATION: "soon" is not a duration`},
		{"negative verify", []string{"PGKILL_VERIFY_TIMEOUT=-1s"}, []string{"list"}, 1, "PGKILL_VERIFY_TIMEOUT"},
		{"malformed target", []string{"PGKILL_TARGETS=prod"}, []string{"list"}, 1, "PGKILL_TARGETS"},
		{"duplicate target", []string{"PGKILL_TARGETS=a=" + dsn + ",a=" + dsn}, []string{"list"}, 1, "used twice"},
		{"unknown command", nil, []string{"frobnicate"}, 2, "unknown command"},
		{"no pid", []string{"DATABASE_URL=" + dsn}, []string{"cancel"}, 2, "usage: pgkill cancel"},
		{"bad pid", []string{"DATABASE_URL=" + dsn}, []string{"cancel", "abc"}, 2, "is not a pid"},
		{"min without unit", []string{"DATABASE_URL=" + dsn}, []string{"list", "-min", "5"}, 2, `"5": add a unit, e.g. 5s`},
		{"negative min", []string{"DATABASE_URL=" + dsn}, []string{"list", "-min", "-5s"}, 2, "must not be negative"},
		{"no such pid", []string{"DATABASE_URL=" + dsn}, []string{"cancel", "-yes", "999999"}, 5, "no client backend with that pid"},
		{"unknown target", []string{"DATABASE_URL=" + dsn}, []string{"list", "-target", "nope"}, 2, "unknown target"},
		{"two targets need -target", []string{"PGKILL_TARGETS=a=" + dsn + ",b=" + dsn}, []string{"cancel", "1"}, 2, "say which with -target"},
		{"serve without tokens", []string{"DATABASE_URL=" + dsn}, []string{"serve"}, 1, "SLACK_APP_TOKEN"},
		{"serve with a flag", []string{"DATABASE_URL=" + dsn}, []string{"serve", "-listen", ":80"}, 2, "serve takes no flags"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := pgkill(t, tc.env, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.say) {
				t.Errorf("exit %d, want %d and %q: %+v", r.code, tc.code, tc.say, r)
			}
			if strings.Contains(r.stderr, "envconfig") || strings.Contains(r.stderr, "PGKILL_TARGETS: PGKILL_TARGETS") {
				t.Errorf("envconfig's words: %s", r.stderr)
			}
		})
	}
}

// Every configuration problem is reported at once, one line each, naming
// its variable.
func TestCLIConfigErrorsAllAtOnce(t *testing.T) {
	env := []string{"PGKILL_MIN_DURATION=soon", "PGKILL_CONNECT_TIMEOUT=5", "PGKILL_ALERT_MAX_PER_POLL=many",
		"PGKILL_VERIFY_TIMEOUT=-1s", "PGKILL_LOG_FORMAT=xml", "PGKILL_TARGETS=prod"}
	r := pgkill(t, env, "", "list")
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	for _, v := range []string{"PGKILL_MIN_DURATION", "PGKILL_CONNECT_TIMEOUT", "PGKILL_ALERT_MAX_PER_POLL", "PGKILL_VERIFY_TIMEOUT", "PGKILL_LOG_FORMAT", "PGKILL_TARGETS"} {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, v) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s on %d lines, want 1", v, n)
		}
	}
	if r.code != 1 || len(lines) != 6 || strings.Contains(r.stderr, "envconfig") {
		t.Errorf("exit %d, %d lines:\n%s", r.code, len(lines), r.stderr)
	}
}

func TestCLIHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		say  []string
	}{
		{[]string{"help"}, []string{"pgkill list", "pgkill cancel [-target T] [-y] [-redact] [-wait 1m] PID...", "Exit codes"}},
		{[]string{}, []string{"pgkill list"}},
		{[]string{"--help"}, []string{"pgkill list"}},
		{[]string{"help", "terminate"}, []string{"usage: pgkill terminate", "rolls back", "-y", "PGKILL_VERIFY_TIMEOUT"}},
		{[]string{"list", "-h"}, []string{"usage: pgkill list", "-watch", "-limit", "-blocking", "shell pattern", "PGKILL_MIN_DURATION", "PGKILL_TARGETS"}},
		{[]string{"cancel", "--help"}, []string{"usage: pgkill cancel", "-yes", "PGKILL_VERIFY_TIMEOUT"}},
		{[]string{"doctor", "-help"}, []string{"usage: pgkill doctor", "-target"}},
		{[]string{"serve", "-h"}, []string{"usage: pgkill serve", "SLACK_APP_TOKEN", "PGKILL_APPROVERS"}},
		{[]string{"manifest", "-h"}, []string{"usage: pgkill manifest", "-command"}},
	} {
		// No configuration: help needs none, and serve -h must not serve.
		r := pgkill(t, nil, "", tc.args...)
		for _, s := range tc.say {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("%v: stdout lacks %q", tc.args, s)
			}
		}
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%v: exit %d, stderr %q", tc.args, r.code, r.stderr)
		}
	}
	if r := pgkill(t, nil, "", "help", "frobnicate"); r.code != 2 {
		t.Errorf("help on an unknown command: %+v", r)
	}
	for _, v := range []string{"--version", "-version", "version"} {
		if r := pgkill(t, nil, "", v); r.code != 0 || !strings.HasPrefix(r.stdout, "pgkill ") || r.stderr != "" {
			t.Errorf("%s: %+v", v, r)
		}
	}
}

func TestCLIDoctorVersion(t *testing.T) {
	r := pgkill(t, []string{"DATABASE_URL=" + pgtest.DSN(t)}, "", "doctor")
	if r.code != 0 || !strings.Contains(r.stdout, "== default") || !strings.Contains(r.stdout, "statement_timeout = 0") ||
		!strings.Contains(r.stdout, "superuser=true") {
		t.Errorf("doctor: %+v", r)
	}
	// Built in a git clone with VCS stamping (GOFLAGS may turn it off): the
	// revision is shown; without it, version says the revision is unknown.
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v (the test runs in a clone)", err)
	}
	for _, tc := range []struct{ flag, say string }{
		{"-buildvcs=true", "revision " + strings.TrimSpace(string(rev))},
		{"-buildvcs=false", "built without version control information: the source revision is unknown"},
	} {
		bin := filepath.Join(t.TempDir(), "pgkill")
		if out, err := exec.Command("go", "build", tc.flag, "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "pgkill ") || !strings.Contains(string(out), tc.say) {
			t.Errorf("version %s: %q %v", tc.flag, out, err)
		}
	}
}

// -watch into a pipe prints each listing after a header, and Ctrl-C
// (SIGINT) ends it with exit 0.
func TestCLIWatch(t *testing.T) {
	sleeper(t, "cli_watch")
	cmd := exec.Command(binary, "list", "-watch", "100ms", "-min", "0s", "-app", "cli_watch")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + pgtest.DSN(t)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// A deadline, not a timing assumption: a hung binary fails the test
	// instead of holding it until go test's own timeout.
	hung := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer hung.Stop()
	sc := bufio.NewScanner(stdout)
	headers := 0
	for headers < 2 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "-- ") && strings.Contains(sc.Text(), "every 100ms (Ctrl-C stops)") {
			headers++
		}
		if strings.Contains(sc.Text(), "\x1b") {
			t.Errorf("terminal escapes into a pipe: %q", sc.Text())
		}
	}
	if headers < 2 {
		t.Fatalf("saw %d listings", headers)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after Ctrl-C: %v", err)
	}
}

func serveEnv(t *testing.T, fake *fakeslack.Server, appToken string) []string {
	return []string{
		"DATABASE_URL=" + pgtest.DSN(t), "SLACK_APP_TOKEN=" + appToken, "SLACK_BOT_TOKEN=" + fakeslack.BotToken,
		"SLACK_API_URL=" + fake.APIURL(), "PGKILL_APPROVERS=U0APPROVER,S0DBA", "PGKILL_LOG_FORMAT=json",
	}
}

// pgkill serve answers Slack, and exits 0 on SIGTERM.
func TestServeAndSIGTERM(t *testing.T) {
	fake := fakeslack.New(t)
	cmd := exec.Command(binary, "serve")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, serveEnv(t, fake, fakeslack.AppToken)...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	fake.Eventually(t, 15*time.Second, "pgkill to connect", fake.Connected)
	fake.SlashCommand(t, "/pgkill", "U0REQ", "C0INCIDENT", "help")
	fake.Eventually(t, 15*time.Second, "the help answer", func() bool {
		for _, m := range fake.Ephemerals("C0INCIDENT", "U0REQ") {
			if strings.Contains(string(m.Blocks), "lists long-running PostgreSQL queries") {
				return true
			}
		}
		return false
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pgkill serve did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"pgkill stopped"`) || strings.Contains(logs.String(), fakeslack.BotToken) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestServeRejectedToken(t *testing.T) {
	fake := fakeslack.New(t)
	r := pgkill(t, serveEnv(t, fake, "xapp-1-wrong-token"), "", "serve")
	if r.code == 0 || !strings.Contains(r.stderr, "invalid_auth") || strings.Contains(r.stderr, "xapp-1-wrong-token") {
		t.Errorf("%+v", r)
	}
}

func TestManifestCommand(t *testing.T) {
	r := pgkill(t, nil, "", "manifest", "-command", "/killq", "-name", "Query Killer")
	if r.code != 0 || !strings.Contains(r.stdout, "command: \"/killq\"") || !strings.Contains(r.stdout, "socket_mode_enabled: true") {
		t.Errorf("%+v", r)
	}
	if r := pgkill(t, nil, "", "manifest", "-command", "kill q"); r.code == 0 {
		t.Errorf("bad command accepted: %+v", r)
	}
}

// The image's binary is built exactly as the Dockerfile builds it: static,
// so it runs on distroless/static.
func TestStaticBuildAsDockerfile(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	const build = `CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/pgkill .`
	for _, want := range []string{build, "FROM gcr.io/distroless/static-debian12:nonroot", "USER nonroot:nonroot",
		`ENTRYPOINT ["/pgkill"]`, `CMD ["serve"]`, "COPY go.mod go.sum ./\nRUN go mod download"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	out := filepath.Join(t.TempDir(), "pgkill")
	cmd := exec.Command("sh", "-c", strings.Replace(build, "/out/pgkill", out, 1))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary is dynamically linked (%v)", p.Type)
		}
	}
	if b, err := exec.Command(out, "version").Output(); err != nil || !strings.HasPrefix(string(b), "pgkill ") {
		t.Errorf("static binary: %q %v", b, err)
	}
}

func TestServeStateStoreErrors(t *testing.T) {
	fake := fakeslack.New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	for _, tc := range []struct{ dsn, say string }{
		{"postgres://u:topsecret@h:notaport/x", "PGKILL_STATE_DSN: invalid DSN"},
		{"postgres://u:topsecret@" + dead + "/x?sslmode=disable&connect_timeout=2", "PGKILL_STATE_DSN: state store"},
	} {
		r := pgkill(t, append(serveEnv(t, fake, fakeslack.AppToken), "PGKILL_STATE_DSN="+tc.dsn), "", "serve")
		if r.code == 0 || !strings.Contains(r.stderr, tc.say) || strings.Contains(r.stderr, "topsecret") {
			t.Errorf("%s: %+v", tc.dsn, r)
		}
	}
}
