package bot

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

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// nopSlack accepts every call: the benchmarks measure polling, not Slack.
type nopSlack struct{ posts atomic.Int64 }

func (n *nopSlack) OpenViewContext(context.Context, string, slack.ModalViewRequest) (*slack.ViewResponse, error) {
	return &slack.ViewResponse{}, nil
}

func (n *nopSlack) AuthTestContext(context.Context) (*slack.AuthTestResponse, error) {
	return &slack.AuthTestResponse{TeamID: "T1"}, nil
}

func (n *nopSlack) PostMessageContext(context.Context, string, ...slack.MsgOption) (string, string, error) {
	return "C", strconv.FormatInt(n.posts.Add(1), 10), nil
}
func (n *nopSlack) UpdateMessageContext(context.Context, string, string, ...slack.MsgOption) (string, string, string, error) {
	return "", "", "", nil
}
func (n *nopSlack) SendMessageContext(context.Context, string, ...slack.MsgOption) (string, string, string, error) {
	return "", "", "", nil
}
func (n *nopSlack) GetUserGroupMembersContext(context.Context, string, ...slack.GetUserGroupMembersOption) ([]string, error) {
	return nil, nil
}

// countingDB counts the statements the watcher sends: pg's List is one
// statement per target.
type countingDB struct {
	Postgres
	lists atomic.Int64
}

func (c *countingDB) List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing {
	c.lists.Add(int64(max(len(targets), 1)))
	return c.Postgres.List(ctx, targets, f)
}

func benchBot(b *testing.B, targets int) (*Bot, *countingDB) {
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
	db := &countingDB{Postgres: fleet}
	cfg := Config{AlertChannel: "C0ALERTS", AlertAfter: time.Millisecond, PollInterval: time.Hour, AlertEditEvery: time.Hour,
		AlertMaxPerPoll: 1000, ConnectTimeout: 5 * time.Second, AlertIgnoreApps: "bench_idle"}
	return New(context.Background(), cfg, db, &nopSlack{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil))), db
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
	bot, db := benchBot(b, 1)
	w := newWatcher(bot, newAlertOutbox(bot)) // its outbox never runs: no Slack here
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
	bot, _ := benchBot(b, 20)
	w := newWatcher(bot, newAlertOutbox(bot)) // its outbox never runs: no Slack here
	var sts []*alertsFor
	for _, n := range bot.targets() {
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
