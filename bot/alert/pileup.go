package alert

import (
	"context"
	"fmt"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/pg"
)

// pileUpAt is how many sessions waiting on locks make a pile-up: one
// message for the queue and its root, instead of an alert per waiter.
const pileUpAt = 10

// pile is an open pile-up's message.
type pile struct {
	key      string
	since    time.Time
	lastEdit time.Time
	shown    string // what the last version said that matters
}

// inQueue reports whether b waits in a lock queue (on a lock, or on the
// lock manager in its deadlock check).
func inQueue(b pg.Backend) bool {
	return b.WaitEventType == "Lock" || b.WaitEventType == "LWLock" && b.WaitEvent == "LockManager"
}

// pileUp keeps a target's pile-up message: posted when pileUpAt sessions
// wait on locks, edited when its root or the lock table's state changes
// (and at most every PGKILL_ALERT_EDIT_INTERVAL for the count), over when
// nobody waits any more. A busy lock table is a pile-up, never "target
// down".
func (w *Watcher) pileUp(ctx context.Context, st *alertsFor, l pg.Listing, now time.Time) {
	switch {
	case st.pile == nil && l.LockWaits < pileUpAt:
		return
	case st.pile != nil && l.LockWaits == 0:
		w.put(st.target, outbox.Item{Key: st.pile.key, Msg: blocks.PileUpMessage(blocks.PileUp{Target: st.target, Role: w.role(st.target), Since: st.pile.since, Now: now, Over: true})})
		w.metrics.Alert("pileup-over")
		st.pile = nil
		return
	}
	root := rootOf(l)
	if root == nil {
		// The poll lists only what has run past the alert threshold: the
		// root may be younger. One more read, of every session (it needs
		// no lock table when that is busy).
		qctx, cancel := context.WithTimeout(ctx, w.cfg.QueryTimeout)
		all := w.db.List(qctx, []string{st.target}, pg.Filter{QueryMax: pg.DefaultQueryMax})[0]
		cancel()
		if all.Err == nil {
			l.Degraded = l.Degraded || all.Degraded
			root = rootOf(all)
		}
	}
	p := blocks.PileUp{Target: st.target, Role: w.role(st.target), Waits: l.LockWaits, Degraded: l.Degraded, Root: root, Now: now}
	shown := fmt.Sprintf("%v/%v", l.Degraded, root != nil)
	if root != nil {
		shown += fmt.Sprint(root.PID)
	}
	if st.pile == nil {
		st.pile = &pile{key: "pileup|" + st.target + "|" + now.Format(time.RFC3339Nano), since: now}
		w.metrics.Alert("pileup")
	} else if shown == st.pile.shown && now.Sub(st.pile.lastEdit) < w.cfg.EditEvery {
		return
	}
	st.pile.lastEdit, st.pile.shown, p.Since = now, shown, st.pile.since
	w.put(st.target, outbox.Item{Key: st.pile.key, Msg: blocks.PileUpMessage(p)})
}

// rootOf is a listing's root blocker that blocks the most, or its likely
// root when the tree could not be read; nil when none is known.
func rootOf(l pg.Listing) *pg.Backend {
	var best *pg.Backend
	for i := range l.Backends {
		b := &l.Backends[i]
		switch {
		case b.RootBlocker() && (best == nil || b.BlockingTotal > best.BlockingTotal):
			best = b
		case b.LikelyRoot && best == nil:
			best = b
		}
	}
	return best
}

// role is target's replication role as the fleet has it now.
func (w *Watcher) role(target string) string {
	for _, s := range w.db.Specs() {
		if s.Name == target {
			return s.Role
		}
	}
	return ""
}
