package pg_test

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// replyCutter forwards TCP to a PostgreSQL server. Once armed, it lets the
// next Bind/Execute through to the server and closes the connection at the
// server's first reply to it: the statement ran, and its answer is lost (a
// network drop, a proxy or a NAT that forgets the flow).
type replyCutter struct {
	l     net.Listener
	to    string
	armed atomic.Bool
	cut   atomic.Bool // a reply was cut
	wg    sync.WaitGroup
}

func newReplyCutter(t *testing.T, to string) *replyCutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replyCutter{l: l, to: to}
	t.Cleanup(func() { _ = l.Close(); p.wg.Wait() })
	p.wg.Add(1)
	go p.serve()
	return p
}

func (p *replyCutter) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			_ = c.Close()
			continue
		}
		var executing atomic.Bool // this connection sent a Bind after arming
		p.wg.Add(2)
		go func() { // client → server
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if p.armed.Load() && buf[0] == 'B' {
						executing.Store(true)
					}
					if _, werr := s.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					_ = s.Close()
					return
				}
			}
		}()
		go func() { // server → client
			defer p.wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && executing.Load() && p.armed.CompareAndSwap(true, false) {
					p.cut.Store(true)
					_ = c.Close()
					_ = s.Close()
					return
				}
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					_ = c.Close()
					return
				}
			}
		}()
	}
}

// A terminate PostgreSQL carried out, whose reply was lost on the way
// back, is never reported as "nothing signalled". A re-run of the
// statement would find the session gone — because pgkill's first run
// ended it — and answer Gone ("nothing was signalled") with no error: the
// card would say the query had finished by itself, and the alert would be
// resolved without crediting the request.
func TestLostSignalReplyIsNotReportedNothingSignalled(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := newReplyCutter(t, u.Host)
	u.Host = p.l.Addr().String()

	s := pgtest.NewSession(t, dsn, "lost_reply_victim")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, u.String(), pg.Options{})
	b := waitBackend(t, tg, pg.Filter{Application: "lost_reply_victim"}, s.PID, nil)

	p.armed.Store(true)
	out, err := tg.Signal(ctx(t), pg.Terminate, b.Identity)
	if !p.cut.Load() {
		t.Fatalf("the proxy cut no reply (outcome %+v, %v): the test did not exercise a lost reply", out, err)
	}
	if code := pgtest.SQLState(s.Result(t)); code != "57P01" {
		t.Fatalf("victim got SQLSTATE %q, want 57P01: the first run did not terminate it", code)
	}
	// pgkill terminated the session. What it reports must say so, or say
	// it does not know (an error: "may or may not have been sent").
	if err == nil && out.Result != pg.Sent {
		t.Errorf("pgkill terminated pid %d but reports %q with no error: the card will say nothing was signalled", b.PID, out.Result)
	}
}

// No signal statement whose reply was lost is sent again or answered for:
// cancel and terminate, one backend or a set. The caller gets an error
// (the bot says "may or may not have been sent") naming what happened.
func TestLostSignalReplyOnAnyPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		action  pg.Action
		victims int
		code    string // what the victims get from the signal
	}{
		{pg.Cancel, 1, "57014"},
		{pg.Cancel, 2, "57014"},
		{pg.Terminate, 1, "57P01"},
		{pg.Terminate, 2, "57P01"},
	} {
		name := fmt.Sprintf("%s%d", tc.action, tc.victims)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dsn := pgtest.DSN(t)
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			p := newReplyCutter(t, u.Host)
			u.Host = p.l.Addr().String()
			tg := newTarget(t, u.String(), pg.Options{})
			victims, ids := sleepers(t, dsn, tg, "lost_reply_"+name, tc.victims)

			p.armed.Store(true)
			outs, err := tg.SignalSet(ctx(t), tc.action, ids)
			if !p.cut.Load() {
				t.Fatalf("the proxy cut no reply (outcomes %+v, %v): the test did not exercise a lost reply", outs, err)
			}
			for i, s := range victims {
				if code := pgtest.SQLState(s.Result(t)); code != tc.code {
					t.Fatalf("victim %d got SQLSTATE %q, want %s: the signal did not reach it", ids[i].PID, code, tc.code)
				}
			}
			if err == nil {
				t.Fatalf("%s of %d with its reply lost: no error, outcomes %+v", tc.action, tc.victims, outs)
			}
			if !errors.Is(err, pg.ErrUnavailable) || !strings.Contains(err.Error(), "before its answer came") || outs != nil {
				t.Errorf("%s with its reply lost: %v (outcomes %+v); want the unavailable error saying the answer was lost, no outcomes", tc.action, err, outs)
			}
		})
	}
}

// A lifeline whose session the server ended while it was idle (a restart,
// an administrator's pg_terminate_backend) is replaced before the signal
// is sent: the signal goes out once, on a live connection, and its answer
// is known.
func TestSignalAfterLifelineSessionEnded(t *testing.T) {
	t.Parallel()
	role := "lifeline_ended"
	dsn := pgtest.Role(t, role)
	s := pgtest.NewSession(t, dsn, "lifeline_ended_victim")
	s.Run("SELECT pg_sleep(60)")
	tg := newTarget(t, dsn, pg.Options{Keepalive: -1})
	b := waitBackend(t, tg, pg.Filter{Application: "lifeline_ended_victim"}, s.PID, nil)
	endOurSessions(t, role)
	out, err := tg.Signal(ctx(t), pg.Terminate, b.Identity)
	if err != nil || out.Result != pg.Sent {
		t.Fatalf("terminate after the lifeline's session ended = %+v, %v; want sent", out, err)
	}
	if code := pgtest.SQLState(s.Result(t)); code != "57P01" {
		t.Errorf("victim got SQLSTATE %q, want 57P01", code)
	}
}
