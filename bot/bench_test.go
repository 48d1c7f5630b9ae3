package bot_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// BenchmarkCommandBurst sends 100 /pgkill commands at once and measures how
// long each envelope took to be acked and how long until the 100th listing
// was posted (each listing queries the real PostgreSQL through the 2-conn
// pool).
func BenchmarkCommandBurst(b *testing.B) {
	e := start(b)
	const burst = 100
	var acks []time.Duration
	var total time.Duration
	for b.Loop() {
		before := len(e.slack.Messages(nil))
		t0 := time.Now()
		ids := make([]string, burst)
		for i := range ids {
			ids[i] = e.slack.SlashCommand(b, "/pgkill", requester, channel, fmt.Sprintf("main %dms", 1000+i))
		}
		for _, id := range ids {
			acks = append(acks, e.slack.WaitAck(b, id).After)
		}
		e.slack.Eventually(b, time.Minute, "100 listings", func() bool {
			return len(e.slack.Messages(func(m fakeslack.Message) bool { return strings.Contains(m.Text, "long-running") })) >= before+burst
		})
		total += time.Since(t0)
	}
	slices.Sort(acks)
	b.ReportMetric(float64(acks[len(acks)/2].Microseconds()), "ack-p50-µs")
	b.ReportMetric(float64(acks[len(acks)*99/100].Microseconds()), "ack-p99-µs")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/burst-of-100")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkManyTargets runs the real bot (bot.Serve, fake Slack, the real
// PostgreSQL) with 100 and 200 targets on one server, started together with
// the default 5 s connect timeout, every target alerting about the same
// runaway query at once. It reports the polls per second against the
// configured rate (targets / PGKILL_POLL_INTERVAL), the "target down" logs
// (all false: the server is up), the alerts posted, how long shutdown took
// and the process's resident memory.
func BenchmarkManyTargets(b *testing.B) {
	for _, n := range []int{100, 200} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dsn := pgtest.DSN(b)
			v := pgtest.NewSession(b, dsn, "bench_many")
			v.Run("SELECT pg_sleep(600)")
			const every = 2 * time.Second
			for b.Loop() {
				e, stop := startOn(b, fakeslack.New(b), func(c *config.Config, specs *[]pg.TargetSpec) {
					c.AlertChannel, c.AlertAfter, c.IdleTxAlertAfter, c.PollInterval = "C0ALERTS", time.Second, 0, every
					c.AlertEditEvery, c.ConnectTimeout = time.Minute, 5*time.Second
					c.LogLevel, c.Listen = "info", "127.0.0.1:0" // as in production: polls are counted from /metrics
					*specs = nil
					for i := range n {
						*specs = append(*specs, pg.TargetSpec{Name: fmt.Sprintf("t%03d", i), DSN: dsn})
					}
				})
				var addr string
				e.slack.Eventually(b, time.Minute, "the metrics endpoint", func() bool {
					rs := e.logs.records("serving /healthz, /readyz and /metrics")
					if len(rs) > 0 {
						addr, _ = rs[0]["addr"].(string)
					}
					return addr != ""
				})
				// Let the first round (connects, alerts) start, then count polls
				// over a window of ten intervals.
				e.slack.Eventually(b, time.Minute, "first alerts", func() bool { return len(e.slack.Calls("chat.postMessage")) > 0 })
				p0, t0 := polls(b, addr), time.Now()
				time.Sleep(10 * every)
				rate := float64(polls(b, addr)-p0) / time.Since(t0).Seconds()
				rss := rssMiB()
				s0 := time.Now()
				stop()
				b.Logf("%d targets: %.1f polls/s (configured %.1f), %d target-down logs, shutdown %.1f s, RSS %.0f MiB",
					n, rate, float64(n)/every.Seconds(), len(e.logs.records("target down")), time.Since(s0).Seconds(), rss)
				b.ReportMetric(time.Since(s0).Seconds(), "shutdown-s")
				b.ReportMetric(rate, "polls/s")
				b.ReportMetric(float64(n)/every.Seconds(), "want-polls/s")
				b.ReportMetric(float64(len(e.logs.records("target down"))), "target-down-logs")
				b.ReportMetric(float64(len(e.slack.Messages(func(m fakeslack.Message) bool { return m.Channel == "C0ALERTS" }))), "alerts-posted")
				b.ReportMetric(rss, "RSS-MiB")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// rssMiB is the test process's resident memory (the bot, the fake Slack and
// the test itself; PostgreSQL runs apart).
func rssMiB() float64 {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// polls sums pgkill_poll_duration_seconds_count over the targets.
func polls(b *testing.B, addr string) int {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "pgkill_poll_duration_seconds_count{") {
			f := strings.Fields(line)
			v, _ := strconv.Atoi(f[len(f)-1])
			n += v
		}
	}
	return n
}
