package demo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/bot/localslack"
)

// The demo shows a rule in action: the search API's runaway copies get
// countdown cards in #db-alerts; Stop on one spares it, the others are
// cancelled when their countdown ends.
func TestDemoAutopilot(t *testing.T) {
	d := startDemo(t)
	copies := []string{"copy-1", "copy-2", "copy-3"}
	card := func(name, want string) (localslack.Message, bool) {
		pid := fmt.Sprintf("pid %d ", d.Incident.PID(name))
		for _, m := range d.Slack.Messages(func(m localslack.Message) bool { return m.Channel == demo.ChannelAlerts }) {
			if b := string(m.Blocks); strings.Contains(b, "autopilot rule `search-runaways`") && strings.Contains(b, pid) && strings.Contains(b, want) {
				return m, true
			}
		}
		return localslack.Message{}, false
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.After(3 * time.Minute)
		for !ok() {
			select {
			case <-d.Slack.Changed():
			case <-time.After(time.Second):
			case <-deadline:
				t.Fatalf("the demo never showed %s", what)
			}
		}
	}
	var stop localslack.Message
	wait("the countdown card of copy-1", func() bool { var ok bool; stop, ok = card("copy-1", "Stop"); return ok })
	if _, err := d.Slack.Press(demo.Requester, stop, blocks.ActionStop, ""); err != nil {
		t.Fatal(err)
	}
	wait("copy-1's card stopped", func() bool { _, ok := card("copy-1", "Stopped"); return ok })
	for _, name := range copies[1:] {
		wait(name+"'s card carried out", func() bool { _, ok := card(name, "The query ended"); return ok })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := d.Incident.Wait(ctx, name)
		cancel()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
			t.Errorf("%s ended with %v, want a cancel (57014)", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.Incident.Wait(ctx, "copy-1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the stopped copy-1 ended: %v", err)
	}
}
