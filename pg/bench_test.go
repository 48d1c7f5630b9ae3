package pg

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/pgtest"
)

// The benchmarks compare List with a plain read of pg_stat_activity (every
// row, every column, decoded by pgx) in the same run, on the same server and
// sessions: the ratio is what the listing costs beyond reading the view. Run
// them one at a time (-bench 'List$'): they hold up to 2,000 connections.

// plainRead is `SELECT * FROM pg_stat_activity`, all rows decoded.
func plainRead(b *testing.B, conn *pgx.Conn) {
	rows, err := conn.Query(context.Background(), "SELECT * FROM pg_stat_activity")
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		if _, err := rows.Values(); err != nil {
			b.Fatal(err)
		}
	}
	if rows.Err() != nil {
		b.Fatal(rows.Err())
	}
}

func benchTarget(b *testing.B, dsn string) (*Target, *pgx.Conn) {
	tg, err := NewTarget(TargetSpec{Name: "bench", DSN: dsn}, Options{StatementTimeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tg.Close)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	return tg, conn
}

// compare runs List (expecting at least want sessions) and the plain read
// as sub-benchmarks named after n.
func compare(b *testing.B, name string, tg *Target, conn *pgx.Conn, f Filter, want int, check func(Listing) error) {
	b.Run(name+"/pgkill", func(b *testing.B) {
		for b.Loop() {
			l, err := tg.List(context.Background(), f)
			if err != nil {
				b.Fatal(err)
			}
			if len(l.Backends) < want || l.NoTree != "" {
				b.Fatalf("listed %d of %d; no tree: %q", len(l.Backends), want, l.NoTree)
			}
			if check != nil {
				if err := check(l); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run(name+"/plain", func(b *testing.B) {
		for b.Loop() {
			plainRead(b, conn)
		}
	})
}

// BenchmarkList: 10 to 2,000 client backends, half running a statement,
// half idle in a transaction (all listed).
func BenchmarkList(b *testing.B) {
	dsn := pgtest.DSN(b)
	tg, conn := benchTarget(b, dsn)
	have := 0
	for _, n := range []int{10, 100, 1000, 2000} {
		for ; have < n; have++ {
			s := pgtest.NewSession(b, dsn, "bench_list")
			if have%2 == 0 {
				s.Run("SELECT pg_sleep(3600)")
			} else {
				s.Exec(b, "BEGIN; SELECT 1")
			}
		}
		waitListed(b, tg, Filter{Application: "bench_list"}, n)
		compare(b, "backends="+strconv.Itoa(n), tg, conn, Filter{QueryMax: DefaultQueryMax}, n, nil)
	}
}

// BenchmarkListLockPileUp: n sessions queued to update one row held by an
// open transaction; every listing must name the holder as root blocker of
// all n.
func BenchmarkListLockPileUp(b *testing.B) {
	dsn := pgtest.Database(b, "benchpileup")
	pgtest.Exec(b, "SELECT 1")
	setup := pgtest.NewSession(b, dsn, "bench_setup")
	setup.Exec(b, "CREATE TABLE IF NOT EXISTS hot (id int PRIMARY KEY, v int); INSERT INTO hot VALUES (1, 0) ON CONFLICT DO NOTHING")
	holder := pgtest.NewSession(b, dsn, "bench_holder")
	holder.Exec(b, "BEGIN; UPDATE hot SET v = v + 1 WHERE id = 1")
	tg, conn := benchTarget(b, dsn)
	have := 0
	for _, n := range []int{100, 400, 1000} {
		for ; have < n; have++ {
			// A long deadlock_timeout: otherwise every waiter's deadlock check
			// (all lock partitions, exclusively) starves the connections
			// still being opened, and the setup times out.
			pgtest.NewSession(b, dsn, "bench_waiter").Run("SET deadlock_timeout = '10min'; UPDATE hot SET v = v + 1 WHERE id = 1")
		}
		waitWaiters(b, conn, n)
		check := func(l Listing) error {
			for _, x := range l.Backends {
				if x.PID == holder.PID {
					if x.BlockingTotal != n || !x.RootBlocker() {
						return fmt.Errorf("holder blocks %d in all, root %v; want %d", x.BlockingTotal, x.RootBlocker(), n)
					}
					return nil
				}
			}
			return fmt.Errorf("holder not listed")
		}
		compare(b, "waiters="+strconv.Itoa(n), tg, conn, Filter{QueryMax: DefaultQueryMax}, n+1, check)
	}
	// Let the waiters go before the sessions are closed.
	holder.Exec(b, "ROLLBACK")
}

// BenchmarkListLongQueries: 1,000 sessions whose query text is 64 kB
// (track_activity_query_size = 65536): DefaultQueryMax against the whole
// text.
func BenchmarkListLongQueries(b *testing.B) {
	dsn := pgtest.DSN(b)
	tg, conn := benchTarget(b, dsn)
	const n = 1000
	long := "SELECT pg_sleep(3600) /* " + strings.Repeat("x", 65000) + " */"
	for range n {
		pgtest.NewSession(b, dsn, "bench_long").Run(long)
	}
	waitListed(b, tg, Filter{Application: "bench_long", State: "active"}, n)
	compare(b, "sessions=1000/text=2000", tg, conn, Filter{QueryMax: DefaultQueryMax}, n, nil)
	b.Run("sessions=1000/text=all/pgkill", func(b *testing.B) {
		for b.Loop() {
			if l, err := tg.List(context.Background(), Filter{}); err != nil || len(l.Backends) < n {
				b.Fatal(len(l.Backends), err)
			}
		}
	})
}

func waitListed(b *testing.B, tg *Target, f Filter, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		l, err := tg.List(context.Background(), f)
		if err != nil {
			b.Fatal(err)
		}
		if len(l.Backends) >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d sessions listed", len(l.Backends), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitWaiters(b *testing.B, conn *pgx.Conn, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var got int
		if err := conn.QueryRow(context.Background(), "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted").Scan(&got); err != nil {
			b.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d sessions wait", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
