package pg

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/pgtest"
)

// BenchmarkList200 measures List on a cluster with 200 client backends (100
// running pg_sleep, 100 idle in a transaction), against the same SQL run raw
// through pgx: the difference is pgkill's own overhead (scanning, marking).
func BenchmarkList200(b *testing.B) {
	dsn := pgtest.DSN(b)
	for i := range 200 {
		s := pgtest.NewSession(b, dsn, "bench_list")
		if i%2 == 0 {
			s.Run("SELECT pg_sleep(600)")
		} else {
			s.Exec(b, "BEGIN; SELECT 1")
		}
	}
	ctx := context.Background()
	tg, err := NewTarget(TargetSpec{Name: "bench", DSN: dsn}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tg.Close()
	if bs, err := tg.List(ctx, Filter{}); err != nil || len(bs) < 200 {
		b.Fatalf("listed %d, %v", len(bs), err)
	}
	b.Run("pgkill", func(b *testing.B) {
		for b.Loop() {
			if _, err := tg.List(ctx, Filter{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw-pgx", func(b *testing.B) {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(ctx)
		for b.Loop() {
			rows, err := conn.Query(ctx, listSQL, 0.0, nil, nil, nil, "all", nil, AppName)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if rows.Err() != nil || n < 200 {
				b.Fatal(rows.Err(), n)
			}
		}
	})
}
