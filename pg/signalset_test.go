package pg_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// One statement signals a set: each member is checked on its own, and a
// member pgkill may not signal comes back Denied without stopping the
// others.
func TestSignalSet(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pgtest.Role(t, "set_app")
	signaller := pgtest.Role(t, "set_signaller", "pg_signal_backend", "pg_read_all_stats")
	a := pgtest.NewSession(t, pgtest.DSNAs(t, "set_app"), "set_a")
	su := pgtest.NewSession(t, dsn, "set_super") // a superuser's session
	stale := pgtest.NewSession(t, pgtest.DSNAs(t, "set_app"), "set_stale")
	d := pgtest.NewSession(t, pgtest.DSNAs(t, "set_app"), "set_d")
	for _, s := range []*pgtest.Session{a, su, stale, d} {
		s.Run("SELECT pg_sleep(600)")
	}
	tg := newTarget(t, signaller, pg.Options{})
	var ids []pg.Identity
	for _, s := range []*pgtest.Session{a, su, stale, d} {
		b := waitBackend(t, tg, pg.Filter{PID: s.PID}, s.PID, func(b pg.Backend) bool { return b.State == pg.StateActive })
		ids = append(ids, b.Identity)
	}
	ids[2].QueryStart = ids[2].QueryStart.Add(-time.Microsecond) // a statement that is no longer running

	outs, err := tg.SignalSet(ctx(t), pg.Cancel, ids)
	if err != nil || len(outs) != 4 {
		t.Fatalf("signal set = %+v, %v", outs, err)
	}
	want := []pg.Result{pg.Sent, pg.Denied, pg.Gone, pg.Sent}
	for i, o := range outs {
		if o.Result != want[i] || o.ID != ids[i] || o.Action != pg.Cancel {
			t.Errorf("member %d: %+v, want %s", i, o, want[i])
		}
	}
	if !strings.Contains(outs[1].Message, "SUPERUSER") || outs[1].Fix == "" || !outs[1].At.IsZero() {
		t.Errorf("denied member: %+v", outs[1])
	}
	for _, s := range []*pgtest.Session{a, d} {
		if code := pgtest.SQLState(s.Result(t)); code != "57014" {
			t.Errorf("signalled member got %q, want 57014", code)
		}
	}
	for _, s := range []*pgtest.Session{su, stale} {
		if !s.Running() {
			t.Errorf("pid %d ended: %v", s.PID, s.Result(t))
		}
	}
	vs, err := tg.VerifySet(ctx(t), outs, 5*time.Second)
	if err != nil || len(vs) != 4 {
		t.Fatalf("verify set = %+v, %v", vs, err)
	}
	for i, v := range vs {
		sent := outs[i].Result == pg.Sent
		if v.Ended != sent || (sent && (v.How != "query ended" || v.MaybeNext)) {
			t.Errorf("member %d verified %+v", i, v)
		}
	}
}

// Fleet.SignalSet groups members by target; a member of an unknown target
// gets its own error and the others are still signalled.
func TestFleetSignalSet(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "fleet_set")
	s.Run("SELECT pg_sleep(600)")
	fleet, err := pg.NewFleet([]pg.TargetSpec{{Name: "main", DSN: dsn}}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	var b pg.Backend
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err = fleet.Backend(ctx(t), "main", s.PID); err == nil && b.State == pg.StateActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend: %+v, %v", b, err)
		}
	}
	ghost := b.Identity
	ghost.Target = "nowhere"
	outs, errs := fleet.SignalSet(ctx(t), pg.Terminate, []pg.Identity{ghost, b.Identity})
	if errs[0] == nil || errs[1] != nil || outs[1].Result != pg.Sent {
		t.Fatalf("outs %+v errs %v", outs, errs)
	}
	vs, errs := fleet.VerifySet(ctx(t), outs, 5*time.Second)
	if errs[1] != nil || !vs[1].Ended || vs[1].How != "session ended" {
		t.Errorf("verify %+v %v", vs, errs)
	}
}

// The approved statement ends by itself and the next one starts before the
// signal goes (the window between the check and kill()): the first
// verification read shows a statement older than the signal, and Verify
// says the signal may have reached it instead of reporting a clean end.
func TestVerifyMaybeNext(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	s := pgtest.NewSession(t, dsn, "maybe_next")
	s.Run("SELECT pg_sleep(600)")
	tg := newTarget(t, dsn, pg.Options{})
	first := waitBackend(t, tg, pg.Filter{Application: "maybe_next"}, s.PID, nil)
	pgtest.Exec(t, "SELECT pg_cancel_backend($1)", s.PID)
	s.Result(t)
	s.Run("SELECT pg_sleep(600)")
	second := waitBackend(t, tg, pg.Filter{Application: "maybe_next"}, s.PID, func(b pg.Backend) bool {
		return b.State == pg.StateActive && !b.QueryStart.Equal(first.QueryStart)
	})
	conn, err := pgx.Connect(ctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var now time.Time
	if err := conn.QueryRow(ctx(t), "SELECT clock_timestamp()").Scan(&now); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		at        time.Time
		maybeNext bool
	}{
		{"signal after the next statement started", now, true},
		{"signal before it started", second.QueryStart.Add(-time.Millisecond), false},
	}
	for _, tc := range tests {
		out := pg.Outcome{Action: pg.Cancel, Result: pg.Sent, ID: first.Identity, At: tc.at}
		v, err := tg.Verify(ctx(t), out, time.Second)
		if err != nil || !v.Ended || v.MaybeNext != tc.maybeNext {
			t.Errorf("%s: %+v, %v", tc.name, v, err)
		}
		if tc.maybeNext && !strings.Contains(v.How, "may have reached") {
			t.Errorf("%s: how = %q", tc.name, v.How)
		}
	}
}
