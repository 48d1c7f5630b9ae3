package blocks

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// plural writes "1 session" or "3 sessions".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// stateText says what a session is doing and for how long, as an approver
// needs it: "running 13s", or "idle in transaction for 13m (transaction
// open 14m)" — an idle session's last statement is not running.
func stateText(b pg.Backend) string {
	switch {
	case b.State.Idle():
		s := fmt.Sprintf("*%s* for %s", Escape(string(b.State)), Duration(b.Duration))
		if b.XactAge > b.Duration {
			s += fmt.Sprintf(" (transaction open %s)", Duration(b.XactAge))
		}
		return s + "; the query shown is its last, not running"
	case b.XactAge > b.Duration+time.Second:
		return fmt.Sprintf("running %s (transaction open %s)", Duration(b.Duration), Duration(b.XactAge))
	}
	return "running " + Duration(b.Duration)
}

// queueText says what the sessions waiting on b queue for, as pg_activity's
// lock view does: "they wait for RowExclusiveLock on public.orders (212)".
func queueText(qs []pg.LockQueue, max int) string {
	var parts []string
	for i, q := range qs {
		if i == max {
			parts = append(parts, fmt.Sprintf("%d more", len(qs)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", lockText(q.Lock), q.Sessions))
	}
	if len(parts) == 0 {
		return ""
	}
	return "they wait for " + strings.Join(parts, ", ")
}

// lockText names a lock: its mode and what it is on.
func lockText(l pg.Lock) string {
	on := ""
	switch {
	case l.Relation != "":
		on = " on " + inline(l.Relation)
	case l.RelationOID != 0:
		on = fmt.Sprintf(" on relation %d of database %s", l.RelationOID, inline(l.Database))
	case l.Type != "" && l.Type != "relation":
		on = " on a " + Escape(l.Type)
	}
	return inline(l.Mode) + on
}

// blocksText says whom b blocks, directly and in total, and what they
// wait for; "" when it blocks nobody (or nobody is known to wait on it).
func blocksText(b pg.Backend) string {
	if b.Blocking == 0 {
		return ""
	}
	s := fmt.Sprintf("blocks %s directly", plural(b.Blocking, "session", "sessions"))
	if b.BlockingTotal > b.Blocking {
		s += fmt.Sprintf(", %d in total", b.BlockingTotal)
	}
	if q := queueText(b.Queue, 3); q != "" {
		s += "; " + q
	}
	return s
}
