package pg_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// A signal whose caller has stopped waiting is never sent: the approval's
// window (bot/approval execute: "it signals only inside that window") is
// the caller's context. The lifeline opens its connection detached from
// the caller (pg/lane.go ready: at least ConnectTimeout), so a connection
// that comes up after the window closed must not carry the signal: pgkill
// has by then recorded "the signal may or may not have been sent" and told
// people to list again.
func TestNoSignalAfterTheCallerGaveUp(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	s := pgtest.NewSession(t, dsn, "late_signal_victim")
	s.Run("SELECT pg_sleep(60)")
	b := waitBackend(t, newTarget(t, dsn, pg.Options{}), pg.Filter{Application: "late_signal_victim"}, s.PID, nil)

	p := pgtest.NewProxy(t, u.Host) // a server that starts sessions late
	p.SetAcceptDelay(1500 * time.Millisecond)
	u.Host = p.Addr()
	tg := newTarget(t, u.String(), pg.Options{ConnectTimeout: 5 * time.Second, Keepalive: -1})
	window, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	out, err := tg.Signal(window, pg.Terminate, b.Identity)
	if err == nil {
		t.Fatalf("the signal answered within its window (%+v): the test did not exercise a late connection", out)
	}
	gaveUp := time.Now()
	// Nothing may reach the backend from now on.
	for time.Since(gaveUp) < 5*time.Second {
		if !s.Running() {
			err := s.Result(t)
			t.Fatalf("pid %d was ended %s after the caller gave up on its signal: SQLSTATE %s (%v)", b.PID,
				time.Since(gaveUp).Round(10*time.Millisecond), pgtest.SQLState(err), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Every way into the signal statement stops where its caller gave up: one
// backend or a set, Target or Fleet (SignalVerify, which carries out
// approved requests), and the second run after the lifeline's session
// was found ended, which reconnects first. Each case's connection comes
// up (through slowAccept) only after its caller's window closed.
func TestNoSignalAfterTheCallerGaveUpOnAnyPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		victims int
		// lost: the lifeline is open, and its session ended by the server
		// while idle, before the signal.
		lost   bool
		signal func(ctx context.Context, f *pg.Fleet, tg *pg.Target, ids []pg.Identity) error
	}{
		{name: "Signal", victims: 1, signal: func(ctx context.Context, _ *pg.Fleet, tg *pg.Target, ids []pg.Identity) error {
			_, err := tg.Signal(ctx, pg.Terminate, ids[0])
			return err
		}},
		{name: "SignalSet", victims: 2, signal: func(ctx context.Context, _ *pg.Fleet, tg *pg.Target, ids []pg.Identity) error {
			_, err := tg.SignalSet(ctx, pg.Terminate, ids)
			return err
		}},
		{name: "FleetSignalVerify", victims: 2, signal: func(ctx context.Context, f *pg.Fleet, _ *pg.Target, ids []pg.Identity) error {
			var errs []error
			for _, a := range f.SignalVerify(ctx, pg.Terminate, ids, time.Second) {
				if a.Err != "" {
					errs = append(errs, errors.New(a.Err))
				}
			}
			return errors.Join(errs...)
		}},
		{name: "SignalAfterLifelineLost", victims: 1, lost: true, signal: func(ctx context.Context, _ *pg.Fleet, tg *pg.Target, ids []pg.Identity) error {
			_, err := tg.Signal(ctx, pg.Terminate, ids[0])
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A role of its own: the case that ends its lifeline's session
			// finds it by role.
			role := "late_" + strings.ToLower(tc.name)
			dsn := pgtest.Role(t, role)
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			p := pgtest.NewProxy(t, u.Host)
			p.SetAcceptDelay(1500 * time.Millisecond)
			u.Host = p.Addr()
			lister := newTarget(t, dsn, pg.Options{})
			victims, ids := sleepers(t, dsn, lister, role, tc.victims)
			f, err := pg.NewFleet([]pg.TargetSpec{{Name: "test", DSN: u.String()}}, pg.Options{ConnectTimeout: 5 * time.Second, Keepalive: -1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			tg, err := f.Target("test")
			if err != nil {
				t.Fatal(err)
			}
			if tc.lost {
				if err := tg.Ping(ctx(t)); err != nil {
					t.Fatal(err)
				}
				endOurSessions(t, role)
			}
			window, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if err := tc.signal(window, f, tg, ids); err == nil {
				t.Fatal("the signal answered within its window: the test did not exercise a late connection")
			}
			// The lane runs one job at a time: once this ping has its
			// answer, the abandoned job has ended, sending its statement
			// or not.
			if err := tg.Ping(ctx(t)); err != nil {
				t.Fatal(err)
			}
			gaveUp := time.Now()
			for time.Since(gaveUp) < 2*time.Second {
				for i, s := range victims {
					if !s.Running() {
						err := s.Result(t)
						t.Fatalf("pid %d was ended after the caller gave up on its signal: SQLSTATE %s (%v)", ids[i].PID, pgtest.SQLState(err), err)
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
