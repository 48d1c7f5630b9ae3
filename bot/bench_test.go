package bot_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/fakeslack"
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
