package alert

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// nopOut drops what is put: the benchmarks measure polling, not Slack.
type nopOut struct{}

func (nopOut) Put(outbox.Item) {}

// nopRequests knows no request.
type nopRequests struct{}

func (nopRequests) EndedBy(context.Context, pg.Identity) (request.Request, bool, error) {
	return request.Request{}, false, nil
}
func (nopRequests) InFlight(context.Context, pg.Identity) (bool, error) { return false, nil }

type nopSets struct{}

func (nopSets) KeepSet(context.Context, request.Set) (string, int) { return "", 0 }

// countingDB counts the statements the watcher sends: pg's List is one
// statement per target.
type countingDB struct {
	*pg.Fleet
	lists atomic.Int64
}

func (c *countingDB) List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing {
	c.lists.Add(int64(max(len(targets), 1)))
	return c.Fleet.List(ctx, targets, f)
}

func benchWatcher(b *testing.B, targets int) (*Watcher, *countingDB) {
	dsn := pgtest.DSN(b)
	var specs []pg.TargetSpec
	for i := range targets {
		specs = append(specs, pg.TargetSpec{Name: "t" + strconv.Itoa(i), DSN: dsn})
	}
	fleet, err := pg.NewFleet(specs, pg.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fleet.Close)
	db := &countingDB{Fleet: fleet}
	ignore, err := match.Parse("bench_idle", match.App)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Channel: "C0ALERTS", After: time.Millisecond, PollInterval: time.Hour, EditEvery: time.Hour,
		MaxPerPoll: 1000, QueryTimeout: 20 * time.Second, Ignore: ignore}
	return New(context.Background(), cfg, Deps{DB: db, Out: nopOut{}, Requests: nopRequests{}, Sets: nopSets{}, Metrics: metrics.New(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}), db
}

// BenchmarkPoll200 is one steady-state poll of a target with 200 client
// backends running past the threshold (all already alerted): its time and
// how many statements it sends.
func BenchmarkPoll200(b *testing.B) {
	dsn := pgtest.DSN(b)
	for range 200 {
		s := pgtest.NewSession(b, dsn, "bench_poll")
		s.Run("SELECT pg_sleep(600)")
	}
	w, db := benchWatcher(b, 1)
	st := &alertsFor{target: "t0", alerts: map[string]*alert{}}
	ctx := context.Background()
	for len(st.alerts) < 200 { // the first polls post the alerts
		w.poll(ctx, st)
	}
	before := db.lists.Load()
	for b.Loop() {
		w.poll(ctx, st)
	}
	b.ReportMetric(float64(db.lists.Load()-before)/float64(b.N), "queries/poll")
}

// BenchmarkRSS20Targets polls 20 targets (each with its 2-connection pool)
// and reports the process's resident memory.
func BenchmarkRSS20Targets(b *testing.B) {
	w, db := benchWatcher(b, 20)
	var sts []*alertsFor
	for _, n := range db.Names() {
		sts = append(sts, &alertsFor{target: n, alerts: map[string]*alert{}})
	}
	ctx := context.Background()
	for b.Loop() {
		for _, st := range sts {
			w.poll(ctx, st)
		}
	}
	b.ReportMetric(float64(rssKB())/1024, "RSS-MiB")
}

func rssKB() int {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
