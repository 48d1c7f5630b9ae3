package pg_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestCancelEndsQuerySessionSurvives(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "cancel_victim")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "cancel_victim"}, s.PID, nil)

	out, err := tg.Signal(ctx(t), pg.Cancel, b.Identity)
	if err != nil || out.Result != pg.Sent {
		t.Fatalf("cancel = %+v, %v", out, err)
	}
	if code := pgtest.SQLState(s.Result(t)); code != "57014" {
		t.Errorf("victim got SQLSTATE %q, want 57014", code)
	}
	v, err := tg.Verify(ctx(t), out, 5*time.Second)
	if err != nil || !v.Ended || v.How != "query ended" {
		t.Errorf("verify = %+v, %v", v, err)
	}
	s.Exec(t, "SELECT 1") // the session survives
	if int32(s.Conn.PgConn().PID()) != b.PID {
		t.Error("pid changed")
	}
}

func TestTerminateEndsSession(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "terminate_victim")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "terminate_victim"}, s.PID, nil)

	out, err := tg.Signal(ctx(t), pg.Terminate, b.Identity)
	if err != nil || out.Result != pg.Sent {
		t.Fatalf("terminate = %+v, %v", out, err)
	}
	if code := pgtest.SQLState(s.Result(t)); code != "57P01" {
		t.Errorf("victim got SQLSTATE %q, want 57P01", code)
	}
	v, err := tg.Verify(ctx(t), out, 5*time.Second)
	if err != nil || !v.Ended || v.How != "session ended" {
		t.Errorf("verify = %+v, %v", v, err)
	}
}

func TestTerminateIdleInTransaction(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "terminate_idle")
	s.Exec(t, "BEGIN; SELECT 1")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "terminate_idle"}, s.PID, nil)

	// Cancel is no use on an idle session: it is not even sent.
	out, err := tg.Signal(ctx(t), pg.Cancel, b.Identity)
	if err != nil || out.Result != pg.Gone {
		t.Errorf("cancel idle = %+v, %v", out, err)
	}
	out, err = tg.Signal(ctx(t), pg.Terminate, b.Identity)
	if err != nil || out.Result != pg.Sent {
		t.Fatalf("terminate = %+v, %v", out, err)
	}
	v, err := tg.Verify(ctx(t), out, 5*time.Second)
	if err != nil || !v.Ended {
		t.Errorf("verify = %+v, %v", v, err)
	}
}

// The listed query ends and the same connection (same pid) starts another:
// a cancel approved for the first must not touch the second.
func TestIdentityCheckSparesNewQuery(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "identity_victim")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, dsn, pg.Options{})
	old := waitBackend(t, tg, pg.Filter{Application: "identity_victim"}, s.PID, nil)

	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", old.PID) // the first query ends
	if code := pgtest.SQLState(s.Result(t)); code != "57014" {
		t.Fatalf("first query: %q", code)
	}
	s.Run("SELECT pg_sleep(60)")
	cur := waitBackend(t, tg, pg.Filter{Application: "identity_victim"}, s.PID, func(b pg.Backend) bool {
		return b.State == pg.StateActive && !b.QueryStart.Equal(old.QueryStart)
	})
	if cur.PID != old.PID || !cur.BackendStart.Equal(old.BackendStart) {
		t.Fatalf("not the same session: %+v vs %+v", cur.Identity, old.Identity)
	}

	for _, action := range []pg.Action{pg.Cancel, pg.Terminate} {
		out, err := tg.Signal(ctx(t), action, old.Identity)
		if err != nil || out.Result != pg.Gone {
			t.Errorf("%s with old identity = %+v, %v; want gone", action, out, err)
		}
	}
	now, err := tg.Backend(ctx(t), s.PID)
	if err != nil || now.State != pg.StateActive || !now.QueryStart.Equal(cur.QueryStart) {
		t.Errorf("new query disturbed: %+v, %v", now, err)
	}
	if !s.Running() {
		t.Errorf("new query ended: %v", s.Result(t))
	}
}

func TestSignalServerChanged(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "server_changed")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "server_changed"}, s.PID, nil)
	id := b.Identity
	id.ServerStart = id.ServerStart.Add(-time.Hour) // as if listed before a restart
	out, err := tg.Signal(ctx(t), pg.Cancel, id)
	if err != nil || out.Result != pg.ServerChanged {
		t.Errorf("signal = %+v, %v; want server-changed", out, err)
	}
}

func TestSignalPermissionDenied(t *testing.T) {
	t.Parallel()
	pgtest.Role(t, "perm_app")
	reader := pgtest.Role(t, "perm_reader", "pg_read_all_stats") // sees, may not signal
	s := pgtest.NewSession(t, pgtest.DSNAs(t, "perm_app"), "perm_victim")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, reader, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "perm_victim"}, s.PID, nil)
	if b.Signallable() {
		t.Errorf("listed as signallable for a role without pg_signal_backend")
	}
	for _, action := range []pg.Action{pg.Cancel, pg.Terminate} {
		out, err := tg.Signal(ctx(t), action, b.Identity)
		if err != nil || out.Result != pg.Denied || out.Message == "" || !strings.Contains(out.Fix, "pg_signal_backend") {
			t.Errorf("%s = %+v, %v; want denied with a fix", action, out, err)
		}
	}
	if !s.Running() {
		t.Errorf("victim ended: %v", s.Result(t))
	}
}

func TestVerifyStillRunning(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "verify_running")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "verify_running"}, s.PID, nil)
	v, err := tg.Verify(ctx(t), pg.Outcome{Action: pg.Cancel, Result: pg.Sent, ID: b.Identity}, 300*time.Millisecond)
	if err != nil || v.Ended || v.State != pg.StateActive || v.WaitEvent != "PgSleep" {
		t.Errorf("verify = %+v, %v; want still running", v, err)
	}
	if why := pg.WhyStillRunning(pg.Cancel, v); !strings.Contains(why, "Terminate") {
		t.Errorf("why = %q", why)
	}
}

func TestPoolSurvivesKilledConnections(t *testing.T) {
	t.Parallel()
	pgtest.Role(t, "pool_owner")
	tg := newTarget(t, pgtest.DSNAs(t, "pool_owner"), pg.Options{})
	if _, err := tg.List(ctx(t), pg.Filter{}); err != nil {
		t.Fatal(err)
	}
	// As on a failover or an administrator's pg_terminate_backend.
	pgtest.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pool_owner' AND application_name = $1", pg.AppName)
	if _, err := tg.List(ctx(t), pg.Filter{}); err != nil {
		t.Errorf("list after our session was killed: %v", err)
	}
}

func TestDeadAndHangingTargets(t *testing.T) {
	t.Parallel()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() { // accepts and never answers
		var conns []net.Conn
		for {
			c, err := hang.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	fleet, err := pg.NewFleet([]pg.TargetSpec{
		{Name: "healthy", DSN: pgtest.DSN(t)},
		{Name: "dead", DSN: "postgres://u:sekrit@" + deadAddr + "/db?sslmode=disable"},
		{Name: "hanging", DSN: "postgres://u:sekrit@" + hang.Addr().String() + "/db?sslmode=disable"},
	}, pg.Options{ConnectTimeout: 500 * time.Millisecond, StatementTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	start := time.Now()
	ls := fleet.List(context.Background(), nil, pg.Filter{})
	elapsed := time.Since(start)
	if len(ls) != 3 || ls[0].Err != nil {
		t.Fatalf("healthy target: %+v", ls)
	}
	if !errors.Is(ls[1].Err, pg.ErrUnavailable) {
		t.Errorf("dead target error = %v, want unavailable", ls[1].Err)
	}
	if !errors.Is(ls[2].Err, pg.ErrTimeout) && !errors.Is(ls[2].Err, pg.ErrUnavailable) {
		t.Errorf("hanging target error = %v, want a timeout", ls[2].Err)
	}
	for _, l := range ls[1:] {
		if l.Err != nil && strings.Contains(l.Err.Error(), "sekrit") {
			t.Errorf("password in error: %v", l.Err)
		}
	}
	// Bounded by the connect timeout (plus a statement), not by the OS TCP timeout.
	if elapsed > 5*time.Second {
		t.Errorf("listing took %v with a 500ms connect timeout", elapsed)
	}
}

func TestDoctor(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	granted := pgtest.Role(t, "doc_granted", "pg_signal_backend", "pg_read_all_stats")
	plain := pgtest.Role(t, "doc_plain")
	readOnly := pgtest.Role(t, "doc_reads", "pg_read_all_stats")
	tests := []struct {
		name                    string
		dsn                     string
		super, signal, readStat bool
		problems                []string
		missing                 []string
	}{
		{"superuser", dsn, true, true, true, nil, nil},
		{"granted", granted, false, true, true, []string{"superuser sessions"}, nil},
		{"plain", plain, false, false, false, []string{"GRANT pg_read_all_stats", "GRANT pg_signal_backend", "superuser sessions"}, []string{"pg_read_all_stats", "pg_signal_backend"}},
		{"reads only", readOnly, false, false, true, []string{"GRANT pg_signal_backend", "superuser sessions"}, []string{"pg_signal_backend"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTarget(t, tc.dsn, pg.Options{}).Doctor(ctx(t))
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if r.Superuser != tc.super || r.SignalBackend != tc.signal || r.ReadAllStats != tc.readStat {
				t.Errorf("report = %+v", r)
			}
			if !slices.Equal(r.Missing, tc.missing) {
				t.Errorf("missing = %q, want %q", r.Missing, tc.missing)
			}
			if r.VersionNum < 120000 || r.Version == "" {
				t.Errorf("version = %q %d", r.Version, r.VersionNum)
			}
			if len(r.Problems) != len(tc.problems) {
				t.Fatalf("problems = %q, want %q", r.Problems, tc.problems)
			}
			for i, p := range tc.problems {
				if !strings.Contains(r.Problems[i], p) {
					t.Errorf("problem %d = %q, want it to mention %q", i, r.Problems[i], p)
				}
			}
			// The throwaway cluster has no statement_timeout: advice is given, and
			// pgkill's own session timeout does not hide it.
			st := r.Settings[0]
			if st.Name != "statement_timeout" || st.Value != "0" || st.Advice == "" {
				t.Errorf("statement_timeout setting = %+v", st)
			}
			// The throwaway cluster allows 2,200 connections with the
			// default deadlock_timeout: the pile-up risk is named.
			dl := r.Settings[len(r.Settings)-1]
			if dl.Name != "deadlock_timeout" || dl.Value != "1s" || !strings.Contains(dl.Advice, "with max_connections = 2200") ||
				!strings.Contains(dl.Advice, "gives pgkill that long to end the root blocker") {
				t.Errorf("deadlock_timeout setting = %+v", dl)
			}
		})
	}
	dead := newTarget(t, "postgres://u:pw@127.0.0.1:1/db?sslmode=disable", pg.Options{ConnectTimeout: 300 * time.Millisecond})
	if r := dead.Doctor(ctx(t)); r.Err == nil {
		t.Error("doctor on a closed port reported no error")
	}
}

// A terminate approved for a query that has since finished, leaving the
// session plain idle (no transaction), spares the session. The query waits
// on an advisory lock the test holds, so it is certainly running when
// listed and ends exactly when the test lets it: no race with a timer.
func TestTerminateSparesSessionWhoseQueryFinished(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	holder := pgtest.NewSession(t, dsn, "terminate_finished_holder")
	holder.Exec(t, "SELECT pg_advisory_lock(7001)")
	s := pgtest.NewSession(t, dsn, "terminate_finished")
	s.Run("SELECT pg_advisory_xact_lock(7001)")
	tg := newTarget(t, dsn, pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "terminate_finished"}, s.PID, func(b pg.Backend) bool {
		return b.State == pg.StateActive && len(b.BlockedBy) == 1 && b.BlockedBy[0] == holder.PID
	})
	holder.Exec(t, "SELECT pg_advisory_unlock(7001)")
	if err := s.Result(t); err != nil {
		t.Fatal(err)
	}
	waitBackend(t, tg, pg.Filter{PID: s.PID}, s.PID, func(x pg.Backend) bool { return x.State == "idle" && x.QueryStart.Equal(b.QueryStart) })
	out, err := tg.Signal(ctx(t), pg.Terminate, b.Identity)
	if err != nil || out.Result != pg.Gone {
		t.Errorf("terminate = %+v, %v; want gone", out, err)
	}
	s.Exec(t, "SELECT 1") // the session is alive
}
