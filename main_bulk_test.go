package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/pg/pgtest"
)

// pgkill cancel with filters and no pid ends exactly the sessions they
// select, on the real server, through the built binary.
func TestCLIBulkCancel(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t), "PGKILL_VERIFY_TIMEOUT=20s"}
	var a, b []*pgtest.Session
	for range 10 {
		a = append(a, sleeper(t, "cli_bulk_A"))
	}
	for range 2 {
		b = append(b, sleeper(t, "cli_bulk_B"))
	}

	r := pgkill(t, env, "", "cancel", "-min", "0s")
	if r.code != 2 || !strings.Contains(r.stderr, "select a set with -target, -db, -user, -app or -state") {
		t.Errorf("fleet-wide cancel not refused: %+v", r)
	}
	r = pgkill(t, append(env, "PGKILL_BULK_MAX=9"), "", "cancel", "-app", "cli_bulk_A", "-min", "0s", "-yes")
	if r.code != 5 || !strings.Contains(r.stdout, "10 sessions match, more than one cancel may end (PGKILL_BULK_MAX=9)") {
		t.Errorf("cap: %+v", r)
	}
	r = pgkill(t, env, "n\n", "cancel", "-app", "cli_bulk_A", "-min", "0s")
	if r.code != 5 || !strings.Contains(r.stdout, "cancel these 10 sessions") || !strings.Contains(r.stdout, "not confirmed; nothing signalled") {
		t.Errorf("not confirmed: %+v", r)
	}
	for _, s := range append(append([]*pgtest.Session(nil), a...), b...) {
		if !s.Running() {
			t.Fatalf("pid %d ended before the confirmed cancel: %v", s.PID, s.Result(t))
		}
	}

	r = pgkill(t, env, "", "cancel", "-app", "cli_bulk_A", "-min", "0s", "-yes")
	if r.code != 0 || !strings.Contains(r.stdout, "10 sessions: queries on default (app=cli_bulk_A)") ||
		!strings.Contains(r.stdout, "ended 10, skipped 0") || !strings.Contains(r.stdout, "still running 0, denied by PostgreSQL 0, failed 0") {
		t.Errorf("bulk cancel: %+v", r)
	}
	for _, s := range a {
		if !strings.Contains(r.stdout, fmt.Sprintf("pid %d on default: ended: query ended", s.PID)) {
			t.Errorf("no line for pid %d", s.PID)
		}
		if got := pgtest.SQLState(s.Result(t)); got != "57014" {
			t.Errorf("pid %d of A: SQLSTATE %q, want 57014 (cancelled)", s.PID, got)
		}
	}
	for _, s := range b {
		if !s.Running() || strings.Contains(r.stdout, fmt.Sprintf("pid %d ", s.PID)) {
			t.Errorf("pid %d of B was touched", s.PID)
		}
	}
	if t.Failed() {
		t.Log(r.stdout)
	}
}

// A bulk cancel over two targets, one of them down: nothing is signalled,
// not even on the target that answered, and the exit code is 3.
func TestCLIBulkCancelTargetDown(t *testing.T) {
	s := sleeper(t, "cli_bulk_down")
	env := []string{
		"PGKILL_TARGETS=good=" + pgtest.DSN(t) + ",down=postgres://u:topsecret@" + closedPort(t) + "/db?sslmode=disable",
		"PGKILL_CONNECT_TIMEOUT=1s",
	}
	r := pgkill(t, env, "", "cancel", "-app", "cli_bulk_down", "-min", "0s", "-yes")
	if r.code != 3 || !strings.Contains(r.stdout, "down: COULD NOT BE READ") ||
		!strings.Contains(r.stdout, "nothing signalled: cancel without pids needs every target it reads to answer; name the targets that do with -target") {
		t.Errorf("%+v", r)
	}
	if !s.Running() {
		t.Errorf("pid %d on the target that answered was signalled: %v", s.PID, s.Result(t))
	}
	if strings.Contains(r.stdout+r.stderr, "topsecret") {
		t.Errorf("password printed: %+v", r)
	}
	r = pgkill(t, env, "", "cancel", "-target", "good", "-app", "cli_bulk_down", "-min", "0s", "-yes")
	if r.code != 0 || !strings.Contains(r.stdout, "ended 1, skipped 0") {
		t.Errorf("with -target good: %+v", r)
	}
	if got := pgtest.SQLState(s.Result(t)); got != "57014" {
		t.Errorf("SQLSTATE %q, want 57014", got)
	}
}
