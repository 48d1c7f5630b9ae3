package cli

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgkill/pgkill/pg"
)

// A table that would wrap in the terminal is fitted to its width: the
// columns that matter least give way first (the target when there is
// one, the application, the database, the user, the wait), then the query
// is cut, and a line says what was left out. -wide and an unknown width
// (a pipe) show everything.
func TestTableFitsTerminal(t *testing.T) {
	long := backend(4242, 3*time.Hour, "UPDATE orders SET status = 'shipped' WHERE id IN (SELECT id FROM pending WHERE region = 'eu-west-1' AND created_at < now() - interval '1 day')")
	long.User, long.Database, long.Application = "reporting", "orders_production_eu", "nightly-report-generator-v2.3.1"
	long.State, long.WaitEventType, long.WaitEvent = pg.StateIdleInTxAborted, "Client", "ClientRead"
	root := backend(17, time.Hour, "SELECT 1")
	root.Blocking, root.BlockingTotal = 3, 812
	f := &fakeDB{names: []string{"prod"}, listings: []pg.Listing{{Target: "prod", Backends: []pg.Backend{long, root}}}}
	tests := []struct {
		width   int
		args    []string
		left    string   // the note's list, "" for no note
		present []string // columns still shown
	}{
		{100, nil, "TARGET, APPLICATION, DATABASE, USER", []string{"PID", "DURATION", "STATE", "WAIT", "Client/ClientRead", "BLOCKING", "QUERY", "ROOT blocks 812", "idle in tx (aborted)"}},
		{72, nil, "TARGET, APPLICATION, DATABASE, USER, WAIT", []string{"PID", "DURATION", "STATE", "BLOCKING", "QUERY", "ROOT blocks 812"}},
		{400, nil, "", []string{"TARGET", "APPLICATION", "nightly-report-generator-v2.3.1"}},
		{0, nil, "", []string{"TARGET", "APPLICATION", "DATABASE", "USER", "WAIT"}},
		{100, []string{"-wide"}, "", []string{"TARGET", "APPLICATION", "interval '1 day')"}},
	}
	for _, tc := range tests {
		r := runOpts(t, f, Options{MinDuration: time.Minute, Width: tc.width}, "", append([]string{"list"}, tc.args...)...)
		lines := strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
		for _, line := range lines[:3] { // header and rows
			if n := utf8.RuneCountInString(line); tc.width > 0 && len(tc.args) == 0 && n > tc.width {
				t.Errorf("width %d: a line of %d columns: %q", tc.width, n, line)
			}
		}
		note := ""
		if len(lines) > 3 && strings.HasPrefix(lines[3], "(") {
			note = lines[3]
		}
		if (tc.left == "") != (note == "") || (note != "" && !strings.Contains(note, "("+tc.left+" left out to fit")) {
			t.Errorf("width %d %v: note %q, want one naming %q", tc.width, tc.args, note, tc.left)
		}
		for _, p := range tc.present {
			if !strings.Contains(r.out, p) {
				t.Errorf("width %d %v: %q missing:\n%s", tc.width, tc.args, p, r.out)
			}
		}
	}
	if w := Width("132", nil); w != 132 {
		t.Errorf("Width(COLUMNS=132) = %d", w)
	}
	if w := Width("", &strings.Builder{}); w != 0 {
		t.Errorf("Width of a buffer = %d, want 0 (never cut)", w)
	}
}
