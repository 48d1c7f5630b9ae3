package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// queryWidth is how much query text a table row shows without -wide.
const queryWidth = 60

// order sorts backends as Slack lists them: root blockers first (ending one
// frees the chain), then a likely root (when the lock table was busy), then
// longest first; ties in target, then pid order, so
// two runs print the same table.
func order(bs []pg.Backend) {
	sort.SliceStable(bs, func(i, j int) bool {
		a, b := bs[i], bs[j]
		if a.RootBlocker() != b.RootBlocker() {
			return a.RootBlocker()
		}
		if a.LikelyRoot != b.LikelyRoot {
			return a.LikelyRoot
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
	} else if b.LikelyRoot {
		parts = append(parts, "likely ROOT")
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

// lockText names a lock: "AccessExclusiveLock on relation orders", "ShareLock
// on transactionid (a row of orders)".
func lockText(l pg.Lock) string {
	what := l.Mode + " on " + l.Type
	switch {
	case l.Relation != "" && (l.Type == "relation" || l.Type == "extend" || l.Type == "page"):
		what += " " + Visible(l.Relation)
	case l.Relation != "":
		what += " (a row of " + Visible(l.Relation) + ")"
	case l.RelationOID != 0:
		what += fmt.Sprintf(" (relation oid %d in database %s)", l.RelationOID, cell(l.Database))
	}
	return what
}

// wantText is " for <lock>", or "" when the lock is not known.
func wantText(l *pg.Lock) string {
	if l == nil {
		return ""
	}
	return " for " + lockText(*l)
}

// queueText summarises what a blocker's direct waiters want.
func queueText(q []pg.LockQueue) string {
	var parts []string
	for _, e := range q {
		parts = append(parts, fmt.Sprintf("%s (%s)", lockText(e.Lock), plural(e.Sessions, "session")))
	}
	return strings.Join(parts, "; ")
}
