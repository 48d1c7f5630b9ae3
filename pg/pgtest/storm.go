package pgtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Storm is a lock pile-up: a holder updates a row and stays idle in its
// transaction, and n waiters queue to update the same row. After
// deadlock_timeout each waiter runs PostgreSQL's deadlock check, which holds
// the lock manager's partition locks while it walks the wait queue: with
// enough waiters the checks queue on those locks (LWLock waits) and, while
// they last, new connections and reads of the lock table stall. That
// stretch is the storm; Storming tells when it is on, by that condition,
// never by time.
type Storm struct {
	DSN     string
	Holder  *Session
	monitor *pgx.Conn // opened before the pile-up: it reads only the activity array
	prober  *pgx.Conn // opened before the pile-up: it reads pg_locks
	probing chan struct{}
	waiters []*pgx.Conn
	wg      sync.WaitGroup
	errs    chan error
	once    sync.Once
}

// StormApp is the application_name of a storm's waiters; the holder's is
// StormApp+"_holder".
const StormApp = "storm_waiter"

// NewStorm creates table hot in database db (if needed), starts the holder
// and opens n waiter connections, at most 16 at a time; Start sets them
// waiting. Cleanup ends the holder's transaction, so the waiters finish,
// and closes everything.
func NewStorm(tb testing.TB, db string, n int) *Storm {
	tb.Helper()
	dsn := Database(tb, db)
	ExecIn(tb, dsn, "CREATE TABLE IF NOT EXISTS hot (id int PRIMARY KEY, v int); INSERT INTO hot VALUES (1, 0) ON CONFLICT DO NOTHING")
	s := &Storm{DSN: dsn, errs: make(chan error, n)}
	var err error
	if s.monitor, err = connect(dsn, "storm_monitor"); err != nil {
		tb.Fatal(err)
	}
	if s.prober, err = connect(dsn, "storm_prober"); err != nil {
		tb.Fatal(err)
	}
	var rows int // prepared while calm: in the storm it waits only on the lock table
	if err := s.prober.QueryRow(context.Background(), probeSQL).Scan(&rows); err != nil {
		tb.Fatal(err)
	}
	s.Holder = NewSession(tb, dsn, StormApp+"_holder")
	s.Holder.Exec(tb, "BEGIN; UPDATE hot SET v = v + 1 WHERE id = 1")
	s.waiters = make([]*pgx.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16) // more at once only queue on the server
	errs := make(chan error, n)
	for i := range s.waiters {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := connect(dsn, StormApp)
			if err != nil {
				errs <- err
				return
			}
			s.waiters[i] = c
		}()
	}
	wg.Wait()
	tb.Cleanup(s.Stop)
	select {
	case err := <-errs:
		tb.Fatalf("pgtest: open %d waiters: %v (max_connections is %d)", n, err, Int(tb, "SELECT current_setting('max_connections')::int"))
	default:
	}
	return s
}

func connect(dsn, app string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["application_name"] = app
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// Start sets every waiter updating the held row.
func (s *Storm) Start() {
	for _, c := range s.waiters {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if _, err := c.Exec(context.Background(), "UPDATE hot SET v = v + 1 WHERE id = 1"); err != nil {
				s.errs <- err
			}
		}()
	}
}

// Waits counts the waiters waiting on a heavyweight lock, and those queued
// on a lightweight one after waiting longer than deadlock_timeout: those
// are in their deadlock check (when a pile-up forms, its waiters also
// queue on lightweight locks briefly to join the queue: those do not
// count). It reads the activity array only: it answers in the storm.
func (s *Storm) Waits(tb testing.TB) (lock, lwlock int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.monitor.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'),
       count(*) FILTER (WHERE wait_event_type = 'LWLock'
                          AND query_start < clock_timestamp() - current_setting('deadlock_timeout')::interval)
FROM pg_stat_get_activity(NULL) WHERE application_name = $1`, StormApp).Scan(&lock, &lwlock)
	if err != nil {
		tb.Fatalf("pgtest: storm monitor: %v", err)
	}
	return lock, lwlock
}

// Storming reports whether at least min waiters are in their deadlock
// checks' lightweight-lock waits: the storm is on.
func (s *Storm) Storming(tb testing.TB, min int) bool {
	tb.Helper()
	_, lw := s.Waits(tb)
	return lw >= min
}

// On reports whether the storm is still on: the last stalled read of
// pg_locks (AwaitStall) still waits, or some waiter is in its deadlock
// check's lightweight-lock wait in one of a few looks 20 ms apart (the
// checks come in bursts, with lulls between them).
func (s *Storm) On(tb testing.TB) bool {
	tb.Helper()
	if s.probing != nil {
		select {
		case <-s.probing:
		default:
			return true
		}
	}
	for range 5 {
		if s.Storming(tb, 1) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// AwaitStorm waits (up to limit) until at least min waiters are in
// lightweight-lock waits.
func (s *Storm) AwaitStorm(tb testing.TB, min int, limit time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !s.Storming(tb, min) {
		if time.Now().After(deadline) {
			lock, lw := s.Waits(tb)
			tb.Fatalf("pgtest: no storm after %s: %d waiters wait on the row, %d on lightweight locks (want %d)", limit, lock, lw, min)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const probeSQL = "SELECT count(*) FROM pg_locks"

// Stall is a read of pg_locks that has waited on the lock table for a
// while: the lock table is stalled, not merely busy.
type Stall struct{ done chan struct{} }

// Stalled reports whether the read is still waiting.
func (p *Stall) Stalled() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// AwaitStall waits (up to limit) until a read of pg_locks, from a
// connection opened before the pile-up, has waited at least d: then every
// read of the lock table waits behind it. Between deadlock checks the lock
// table answers now and then, so reads are repeated until one stalls.
func (s *Storm) AwaitStall(tb testing.TB, d, limit time.Duration) *Stall {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		if s.probing != nil {
			<-s.probing // the previous probe, if the test let it run on
		}
		p := &Stall{done: make(chan struct{})}
		s.probing = p.done
		go func() {
			defer close(p.done)
			var n int
			_ = s.prober.QueryRow(context.Background(), probeSQL).Scan(&n)
		}()
		select {
		case <-p.done:
		case <-time.After(d):
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: the lock table never stalled for %s within %s", d, limit)
		}
	}
}

// AwaitGone waits (up to limit) until pid has no backend any more, looking
// every 5 ms, and returns how long that took.
func (s *Storm) AwaitGone(tb testing.TB, pid int32, limit time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		var n int
		if err := s.monitor.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_get_activity($1)", pid).Scan(&n); err != nil {
			tb.Fatal(err)
		}
		if n == 0 {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			tb.Fatalf("pgtest: pid %d still there after %s", pid, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// AwaitDrained waits (up to limit) until no waiter waits any more.
func (s *Storm) AwaitDrained(tb testing.TB, limit time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		lock, lw := s.Waits(tb)
		var busy int // any lightweight-lock wait
		if err := s.monitor.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_get_activity(NULL) WHERE application_name = $1 AND wait_event_type = 'LWLock'", StormApp).Scan(&busy); err != nil {
			tb.Fatal(err)
		}
		lw = max(lw, busy)
		if lock+lw == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: the queue has not drained after %s: %d waiters wait on the row, %d on lightweight locks", limit, lock, lw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the holder's transaction (if it still has one) so the waiters
// finish, then closes every connection. It runs once; the test's cleanup
// calls it too.
func (s *Storm) Stop() { s.once.Do(s.stop) }

func (s *Storm) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if !s.Holder.Conn.IsClosed() {
		_, _ = s.Holder.Conn.Exec(ctx, "ROLLBACK")
	}
	s.wg.Wait()
	if s.probing != nil {
		<-s.probing
	}
	for _, c := range s.waiters {
		if c != nil {
			c.Close(ctx)
		}
	}
	s.monitor.Close(ctx)
	s.prober.Close(ctx)
}

// Err is the first error a waiter's update ended with, if any (a waiter
// may end with the terminated holder's row updated: no error).
func (s *Storm) Err() error {
	select {
	case err := <-s.errs:
		return fmt.Errorf("a waiter: %w", err)
	default:
		return nil
	}
}

// CIStormWaiters is the smallest pile-up that made a storm of several
// seconds on the 2-core CI machine (PostgreSQL 15, deadlock_timeout 1s):
// with 300 the deadlock checks hardly queue, with 500 they hold the lock
// table for 4-14 s.
const CIStormWaiters = 500

// StormWaiters is how many waiters a storm of a test or benchmark gets:
// PGKILL_STORM_WAITERS, or def.
func StormWaiters(tb testing.TB, def int) int {
	tb.Helper()
	if s := os.Getenv("PGKILL_STORM_WAITERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatalf("PGKILL_STORM_WAITERS: %v", err)
		}
		return n
	}
	return def
}
