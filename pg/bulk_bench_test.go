package pg

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/match"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// statements counts what a target sends: the signalling and verifying
// statements by their SQL, every statement, and the prepares pgx does the
// first time a connection runs a statement (one more round trip each).
type statements struct{ signal, verify, all, prepares atomic.Int64 }

// snapshot is the counts so far: signal, verify, all, prepares.
func (s *statements) snapshot() [4]int64 {
	return [4]int64{s.signal.Load(), s.verify.Load(), s.all.Load(), s.prepares.Load()}
}

func (s *statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.all.Add(1)
	switch d.SQL {
	case signalSetSQL:
		s.signal.Add(1)
	case verifySetSQL:
		s.verify.Add(1)
	}
	return ctx
}

func (s *statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (s *statements) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	s.prepares.Add(1)
	return ctx
}

func (s *statements) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}

// counted makes tg's connections count their statements (tg must not have
// connected yet).
func counted(tg *Target) *statements {
	s := &statements{}
	tg.connCfg.Tracer = s
	return s
}

// BenchmarkBulkCancel is what follows the approval of a bulk cancel of 500
// sessions on one target: SignalSet (one statement, each member's identity
// checked in it), then VerifySet (one statement per poll) until all have
// ended. Each iteration starts the 500 statements again (not timed).
// Reported: the time per bulk cancel, and statements per bulk cancel. The
// target has protection rules as a deployment has (the default and a
// backup role's dumps), which the signalling statement checks per member.
func BenchmarkBulkCancel(b *testing.B) {
	const n = 500
	dsn := pgtest.DSN(b)
	protect, err := match.Parse("user=rdsadmin, user=backup app=pg_dump*", "")
	if err != nil {
		b.Fatal(err)
	}
	tg, err := NewTarget(TargetSpec{Name: "bench", DSN: dsn}, Options{StatementTimeout: 30 * time.Second, Protect: protect})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tg.Close)
	count := counted(tg)
	sessions := make([]*pgtest.Session, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 20) // connects at once: more only queue on the server
	for i := range sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			sessions[i] = pgtest.NewSession(b, dsn, "bench_bulk")
		}()
	}
	wg.Wait()
	for _, k := range []int{50, n} {
		b.Run(fmt.Sprintf("sessions=%d", k), func(b *testing.B) { benchBulkCancel(b, tg, count, sessions[:k]) })
	}
}

// benchBulkCancel runs the bulk cancels of sessions and reports them.
func benchBulkCancel(b *testing.B, tg *Target, count *statements, sessions []*pgtest.Session) {
	n := len(sessions)
	ctx := context.Background()
	var signalled time.Duration
	var sent [4]int64 // in the timed part only
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for _, s := range sessions {
			s.Run("SELECT pg_sleep(3600)")
		}
		waitActive(b, tg, n)
		l, err := tg.List(ctx, Filter{Application: "bench_bulk", State: "active"})
		if err != nil || len(l.Backends) != n {
			b.Fatalf("listed %d of %d: %v", len(l.Backends), n, err)
		}
		ids := make([]Identity, n)
		for j, x := range l.Backends {
			ids[j] = x.Identity
		}
		b.StartTimer()

		before := count.snapshot()
		start := time.Now()
		outs, err := tg.SignalSet(ctx, Cancel, ids)
		if err != nil {
			b.Fatal(err)
		}
		signalled += time.Since(start)
		vs, err := tg.VerifySet(ctx, outs, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		after := count.snapshot()
		for k := range sent {
			sent[k] += after[k] - before[k]
		}
		for j, v := range vs {
			if outs[j].Result != Sent || !v.Ended {
				b.Fatalf("member %d: %s, ended %v", j, outs[j].Result, v.Ended)
			}
		}
		for _, s := range sessions {
			if code := pgtest.SQLState(s.Result(b)); code != "57014" {
				b.Fatalf("pid %d: SQLSTATE %q", s.PID, code)
			}
		}
		b.StartTimer()
	}
	b.StopTimer()
	ops := float64(b.N)
	b.ReportMetric(float64(signalled.Milliseconds())/ops, "ms-to-signal/op")
	b.ReportMetric(float64(sent[0])/ops, "signal-stmts/op")
	b.ReportMetric(float64(sent[1])/ops, "verify-polls/op")
	b.ReportMetric(float64(sent[2]-sent[0]-sent[1])/ops, "other-stmts/op")
	b.ReportMetric(float64(sent[3])/ops, "prepares/op")
}

// waitActive waits until exactly n bench_bulk statements run.
func waitActive(b *testing.B, tg *Target, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, err := tg.List(context.Background(), Filter{Application: "bench_bulk", State: "active"})
		if err == nil && len(l.Backends) == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d sessions active: %v", len(l.Backends), n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
