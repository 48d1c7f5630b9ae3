package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// queryWidth is how much query text a table row shows without -wide.
const queryWidth = 60

// order sorts backends as Slack lists them: root blockers first (ending one
// frees the chain), then longest first; ties in target, then pid order, so
// two runs print the same table.
func order(bs []pg.Backend) {
	sort.SliceStable(bs, func(i, j int) bool {
		a, b := bs[i], bs[j]
		if a.RootBlocker() != b.RootBlocker() {
			return a.RootBlocker()
		}
		if a.Duration != b.Duration {
			return a.Duration > b.Duration
		}
		if a.Target != b.Target {
			return a.Target < b.Target
		}
		return a.PID < b.PID
	})
}

// writeTable prints an aligned table, one line per backend.
func writeTable(w io.Writer, bs []pg.Backend, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tPID\tDURATION\tSTATE\tUSER\tDATABASE\tAPPLICATION\tWAIT\tBLOCKING\tQUERY")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			b.Target, b.PID, blocks.Duration(b.Duration), b.State, cell(b.User), cell(b.Database),
			cell(b.Application), waitEvent(b.WaitEventType, b.WaitEvent), blocking(b), tableQuery(b, wide))
	}
	return tw.Flush()
}

// cell is a name for a table cell: visible, and "-" when empty. Tabs are
// escaped by Visible, so a name cannot shift the columns.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return Visible(s)
}

func tableQuery(b pg.Backend, wide bool) string {
	q := oneLine(b.Query, queryWidth)
	if wide {
		q = oneLine(b.Query, -1)
	}
	if wide && b.QueryTruncated {
		q += " [the server keeps no more: track_activity_query_size]"
	}
	if !b.Signallable() {
		q += "  [" + Visible(b.Protected) + "]"
	}
	return q
}

// oneLine folds whitespace and cuts to n runes (n < 0: whole), then makes
// what is left visible.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if n >= 0 {
		s = blocks.Truncate(s, n)
	}
	return Visible(s)
}

// blocking marks root blockers (ending them frees the rest) and waiters.
func blocking(b pg.Backend) string {
	var parts []string
	if b.RootBlocker() {
		parts = append(parts, fmt.Sprintf("ROOT blocks %d", b.BlockingTotal))
	} else if b.Blocking > 0 {
		parts = append(parts, fmt.Sprintf("blocks %d", b.BlockingTotal))
	}
	if len(b.BlockedBy) > 0 {
		parts = append(parts, "waits on "+pids(b.BlockedBy))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func pids(ps []int32) string {
	var out []string
	for _, p := range ps {
		if p == 0 {
			out = append(out, "prepared-xact")
		} else {
			out = append(out, fmt.Sprint(p))
		}
	}
	return strings.Join(out, ",")
}

func waitEvent(typ, ev string) string {
	if typ == "" {
		return "-"
	}
	return Visible(typ + "/" + ev)
}

// describe is one line about a backend, for confirmations.
func describe(b pg.Backend) string {
	return fmt.Sprintf("user %s, database %s, application %s, client %s, %s for %s",
		cell(b.User), cell(b.Database), cell(b.Application), cell(b.Client), b.State, blocks.Duration(b.Duration))
}

// txAge is how long b's transaction has been open: computed by the server
// for a session idle in one, else from xact_start (our clock: at least the
// statement's own age).
func txAge(b pg.Backend, now time.Time) time.Duration {
	if b.State.Idle() || b.XactStart.IsZero() {
		return b.Duration
	}
	return max(b.Duration, now.Sub(b.XactStart))
}

// plural is "1 session" or "3 sessions".
func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}
