package pg

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg/pgtest"
)

// BenchmarkLockStorm is a lock pile-up of n waiters on one row (one storm
// per run: use -benchtime 1x; PGKILL_STORM_WAITERS sets n, 1,000 by
// default), with pgkill connected before it. Once the storm is on (waiters
// in their deadlock checks and a read of pg_locks stalled for 300 ms) it
// lists, terminates the root it names at once, and reports:
//
//	first-answer-ms    the listing, from the lifeline (Degraded or not)
//	likely-root-right  1 when the root it names (likely or in the tree) is the holder
//	degraded           1 when the lock table did not answer within the budget
//	signal-ms          from asking the terminate to the signal sent
//	gone-ms            from the signal sent to the holder's backend gone (looked at every 5 ms)
//	verified-ms        from the signal sent to Verify seeing it gone (its polls back off)
//	tree-ms            from the signal sent to Complete's listing with the tree
//	drained-ms         from the signal sent to no waiter waiting any more
//	cold-ms            a new connection's listing asked with the first answer (as `pgkill list` started in the storm)
//
// BenchmarkLockStormUntouched is the same pile-up left alone: storm-ms is
// how long its waiters queue on the lock manager.
func BenchmarkLockStorm(b *testing.B) {
	n := pgtest.StormWaiters(b, 1000)
	b.Run("waiters="+strconv.Itoa(n), func(b *testing.B) {
		for range b.N { // stormOnce times only the incident, not the set-up
			stormOnce(b, n)
		}
	})
}

func BenchmarkLockStormUntouched(b *testing.B) {
	n := pgtest.StormWaiters(b, 1000)
	b.Run("waiters="+strconv.Itoa(n), func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			storm := pgtest.NewStorm(b, "stormbench", n)
			storm.Start()
			storm.AwaitStorm(b, 20, 5*time.Minute)
			start := time.Now()
			b.StartTimer()
			for storm.On(b) {
				time.Sleep(100 * time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(time.Since(start).Milliseconds()), "storm-ms")
		}
	})
}

func stormOnce(b *testing.B, n int) {
	b.StopTimer()
	storm := pgtest.NewStorm(b, "stormbench", n)
	tg, err := NewTarget(TargetSpec{Name: "bench", DSN: storm.DSN}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tg.Close()
	ctx := context.Background()
	f := Filter{Application: pgtest.StormApp + "*"}
	first := pgtest.NewSession(b, storm.DSN, pgtest.StormApp+"_first")
	first.Run("UPDATE hot SET v = v + 1 WHERE id = 1")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		l, err := tg.List(ctx, f)
		if err == nil && backendOf(l, storm.Holder.PID).RootBlocker() {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("calm listing: %+v, %v", l, err)
		}
	}
	cold, err := NewTarget(TargetSpec{Name: "cold", DSN: storm.DSN}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer cold.Close()
	storm.Start()
	storm.AwaitStorm(b, 20, 5*time.Minute)
	storm.AwaitStall(b, 300*time.Millisecond, 5*time.Minute)
	b.StartTimer()

	start := time.Now()
	coldDone := make(chan time.Duration, 1)
	go func() {
		_, err := cold.List(WithConnectWait(ctx, 15*time.Minute), f)
		if err != nil {
			b.Error(err)
		}
		coldDone <- time.Since(start)
	}()
	l, err := tg.List(ctx, f)
	answer := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	var root Backend
	for _, x := range l.Backends {
		if x.LikelyRoot || x.RootBlocker() {
			root = x
		}
	}
	start = time.Now()
	out, err := tg.Signal(ctx, Terminate, root.Identity)
	signal := time.Since(start)
	if err != nil || out.Result != Sent {
		b.Fatalf("terminate %d: %+v, %v", root.PID, out, err)
	}
	sent := time.Now()
	gone := storm.AwaitGone(b, root.PID, 15*time.Minute)
	v, err := tg.Verify(ctx, out, time.Minute)
	if err != nil || !v.Ended {
		b.Fatalf("verify: %+v, %v", v, err)
	}
	verified := time.Since(sent)
	full, err := tg.Complete(ctx, l)
	for err == nil && full.Degraded {
		full, err = tg.Complete(ctx, full)
	}
	tree := time.Since(sent)
	if err != nil {
		b.Fatal(err)
	}
	storm.AwaitDrained(b, 15*time.Minute)
	drained := time.Since(sent)
	coldAnswer := <-coldDone
	b.StopTimer()
	b.Logf("%d waiters: first answer %s (degraded %v, %q), terminate of pid %d (holder %d) sent %s after asked, gone %s later (verified %s), tree %s, drained %s after the signal; a cold connection's listing %s",
		n, answer, l.Degraded, l.NoTree, root.PID, storm.Holder.PID, signal, gone, verified, tree, drained, coldAnswer)

	right := 0.0
	if root.PID == storm.Holder.PID {
		right = 1
	}
	degraded := 0.0
	if l.Degraded {
		degraded = 1
	}
	b.ReportMetric(float64(answer.Milliseconds()), "first-answer-ms")
	b.ReportMetric(right, "likely-root-right")
	b.ReportMetric(degraded, "degraded")
	b.ReportMetric(float64(signal.Milliseconds()), "signal-ms")
	b.ReportMetric(float64(gone.Milliseconds()), "gone-ms")
	b.ReportMetric(float64(verified.Milliseconds()), "verified-ms")
	b.ReportMetric(float64(tree.Milliseconds()), "tree-ms")
	b.ReportMetric(float64(drained.Milliseconds()), "drained-ms")
	b.ReportMetric(float64(coldAnswer.Milliseconds()), "cold-ms")
}
