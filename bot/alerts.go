package bot

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
)

type alert struct {
	backend   pg.Backend
	summary   *summary
	since     time.Time
	lastEdit  time.Time
	lastShown string // what the last edit showed that matters (blocking)
	queued    bool   // this process queued its post (else another did, or an earlier run)

	// Set by the outbox's callbacks; guarded by watcher.mu.
	ts       string // the alert message once Slack has it ("" before)
	failed   bool   // the outbox gave up on its post
	resolved bool   // the target's goroutine is done with it
}

type summary struct {
	key   string // the summary's outbox key
	total int
	open  int // queries of the summary still running
	since time.Time

	// Guarded by watcher.mu: set once Slack has it, or the outbox gave up.
	ts     string
	failed bool
}

// watcher polls each target on its own schedule and keeps the alert channel
// up to date. Each target's state is touched only by its own goroutine,
// except what the outbox reports back (ts, failed), under mu. No poll ever
// waits on Slack: messages go through the outbox.
type watcher struct {
	b   *Bot
	out *outbox.Outbox

	protect match.Rules // never alerted: protected sessions
	ignore  match.Rules // never alerted: PGKILL_ALERT_IGNORE

	mu sync.Mutex
}

// newWatcher makes the alert watcher, sending through out; the rules were
// checked by Validate.
func newWatcher(b *Bot, out *outbox.Outbox) *watcher {
	w := &watcher{b: b, out: out}
	w.protect, _ = b.cfg.ProtectRules()
	w.ignore, _ = b.cfg.AlertIgnoreRules()
	return w
}

// alertChannel is the alert channel as the outbox sends to it.
type alertChannel struct{ b *Bot }

func (c alertChannel) Post(ctx context.Context, m blocks.Message) (string, error) {
	return c.b.post(ctx, c.b.cfg.AlertChannel, "", m)
}

func (c alertChannel) Update(ctx context.Context, ts string, m blocks.Message) error {
	return c.b.update(ctx, c.b.cfg.AlertChannel, ts, m)
}

// newAlertOutbox makes the queue the watcher posts through: one message a
// second, as Slack allows per channel.
func newAlertOutbox(b *Bot) *outbox.Outbox {
	return outbox.New(alertChannel{b}, outbox.Options{Pace: time.Second, Log: b.log})
}

// alertsFor is one target's alert state.
type alertsFor struct {
	target    string
	alerts    map[string]*alert // by alertKey
	down      bool
	downSince time.Time
}

// threshold is the shortest duration any alert needs: the poll asks for
// that, one query, and sorts by state afterwards.
func (w *watcher) threshold() time.Duration {
	d := w.b.cfg.AlertAfter
	if w.b.cfg.IdleTxAlertAfter > 0 {
		d = min(d, w.b.cfg.IdleTxAlertAfter)
	}
	return d
}

// runaway says whether b deserves an alert.
func (w *watcher) runaway(b pg.Backend) bool {
	cfg := w.b.cfg
	switch {
	case b.BackendType != "client backend":
		return false
	case w.skip(b):
		return false
	case b.State == pg.StateActive || b.State == pg.StateFastpath:
		return b.Duration >= cfg.AlertAfter
	case b.State.Idle():
		return cfg.IdleTxAlertAfter > 0 && b.Duration >= cfg.IdleTxAlertAfter
	}
	return false
}

// skip says whether a session is protected or ignored: the same parsed
// rules and matcher the listing uses.
func (w *watcher) skip(b pg.Backend) bool {
	if _, ok := w.protect.Match(b.User, b.Application); ok {
		return true
	}
	_, ok := w.ignore.Match(b.User, b.Application)
	return ok
}

// poll is one round for one target: one query.
func (w *watcher) poll(ctx context.Context, st *alertsFor) {
	qctx, cancel := context.WithTimeout(ctx, w.b.queryTimeout())
	start := time.Now()
	ls := w.b.db.List(qctx, []string{st.target}, pg.Filter{MinDuration: w.threshold(), QueryMax: pg.DefaultQueryMax})
	cancel()
	if ctx.Err() != nil || !w.holds(st.target) { // shutting down or handed over: that answer is not ours to act on
		return
	}
	// From here on the poll finishes what it starts — its state and what it
	// queues for Slack — even when shutdown begins.
	ctx = w.b.work
	w.b.metrics.polled(st.target, time.Since(start), ls[0].Err == nil)
	w.b.health.checked(st.target, ls[0].Err, w.b.now())
	now := w.b.now()
	if err := ls[0].Err; err != nil {
		if !st.down {
			st.down, st.downSince = true, now
			w.b.log.Warn("target down", slog.String("target", st.target), slog.String("error", err.Error()))
			w.notice("down", st.target, now, blocks.TargetDown(st.target, err, now))
			w.b.metrics.alert("target-down")
		}
		return // the alerts of a target we cannot see stay as they are
	}
	if st.down {
		st.down = false
		w.b.log.Info("target up", slog.String("target", st.target))
		w.notice("up", st.target, now, blocks.TargetUp(st.target, now.Sub(st.downSince), now))
		w.b.metrics.alert("target-up")
	}

	w.b.log.Debug("polled", slog.String("target", st.target), slog.Int("backends", len(ls[0].Backends)), slog.Int("alerts", len(st.alerts)))
	w.adopt(ctx, st)
	seen := map[string]bool{}
	var fresh []pg.Backend
	for _, b := range ls[0].Backends {
		if !w.runaway(b) {
			continue
		}
		k := alertKey(b)
		seen[k] = true
		if a, ok := st.alerts[k]; ok {
			w.refresh(st, a, b, now)
		} else {
			fresh = append(fresh, b)
		}
	}
	for k, a := range st.alerts {
		if !seen[k] && !w.unconfirmed(a, now) {
			w.resolve(ctx, a, now)
			delete(st.alerts, k)
			w.forget(ctx, k)
		}
	}
	fresh = w.claim(ctx, st, fresh, now)
	if len(fresh) > w.b.cfg.AlertMaxPerPoll {
		w.flood(ctx, st, fresh, now)
		return
	}
	for _, b := range fresh {
		a := &alert{backend: b, since: now, lastEdit: now, lastShown: blockingState(b)}
		st.alerts[alertKey(b)] = a
		w.postAlert(st.target, a, w.b.alertMessage(blocks.Alert{Backend: b, Since: now, Now: now}))
	}
}

// notice posts a one-off message (target down, target up).
func (w *watcher) notice(kind, target string, now time.Time, m blocks.Message) {
	w.out.Put(outbox.Item{Key: kind + "|" + target + "|" + now.Format(time.RFC3339Nano), Msg: m})
}

// postAlert queues a new alert; once Slack has it, its ts is recorded, in
// the state store too. Until then it has none: a failed post is retried by
// the outbox, never recorded as posted.
func (w *watcher) postAlert(target string, a *alert, m blocks.Message) {
	a.queued = true
	key := alertKey(a.backend)
	doc := encodeAlert(a, "")
	w.out.Put(outbox.Item{Key: key, Msg: m, Sent: func(ts string, err error) {
		w.mu.Lock()
		a.ts, a.failed = ts, err != nil
		resolved := a.resolved
		w.mu.Unlock()
		if err != nil {
			return
		}
		w.b.metrics.alert("posted")
		if !resolved {
			w.saveDoc(target, key, withTS(doc, ts, ""))
		}
	}})
}

// edit queues a new version of a posted (or queued) alert.
func (w *watcher) edit(a *alert, m blocks.Message) {
	w.mu.Lock()
	ts, failed := a.ts, a.failed
	w.mu.Unlock()
	if failed || ts == "" && !a.queued { // never posted, or another process posts it
		return
	}
	w.out.Put(outbox.Item{Key: alertKey(a.backend), TS: ts, Msg: m})
}

// flood posts one summary instead of many alerts; its queries are known from
// then on and never alerted one by one.
func (w *watcher) flood(ctx context.Context, st *alertsFor, fresh []pg.Backend, now time.Time) {
	s := &summary{key: "summary|" + st.target + "|" + now.Format(time.RFC3339Nano), total: len(fresh), open: len(fresh), since: now}
	members := map[string]*alert{}
	docs := map[string][]byte{}
	for _, b := range fresh {
		a := &alert{backend: b, summary: s, since: now, lastEdit: now, queued: true}
		st.alerts[alertKey(b)] = a
		members[alertKey(b)], docs[alertKey(b)] = a, encodeAlert(a, "")
	}
	setID, n := w.b.keepSet(ctx, freeze([]pg.Listing{{Target: st.target, Backends: fresh}}, floodScope(st.target, len(fresh), now), now))
	msg := blocks.AlertSummary(blocks.Summary{Backends: fresh, Show: 3, BulkSet: setID, BulkCount: n, Now: now})
	w.out.Put(outbox.Item{Key: s.key, Msg: msg, Sent: func(ts string, err error) {
		w.mu.Lock()
		s.ts, s.failed = ts, err != nil
		if err != nil {
			w.mu.Unlock()
			return
		}
		var open []string
		for k, a := range members {
			if !a.resolved {
				open = append(open, k)
			}
		}
		w.mu.Unlock()
		w.b.metrics.alert("summary")
		for _, k := range open {
			w.saveDoc(st.target, k, withTS(docs[k], ts, ts))
		}
	}})
}

// orphanAfter is how long an alert may stay claimed but unposted before
// another process (or a restarted one) posts it: four polls (a minute by
// default).
func (w *watcher) orphanAfter() time.Duration { return 4 * w.b.cfg.PollInterval }

// refresh edits a live alert in place, at most every PGKILL_ALERT_EDIT_INTERVAL,
// or at once when it starts or stops blocking others.
func (w *watcher) refresh(st *alertsFor, a *alert, b pg.Backend, now time.Time) {
	a.backend = b
	if a.summary != nil {
		return
	}
	if !a.queued && a.ts == "" && now.Sub(a.since) > w.orphanAfter() {
		// Claimed (by an earlier run or another process) and still not
		// posted: that one died, or Slack kept refusing it. Better twice
		// than never.
		w.postAlert(st.target, a, w.b.alertMessage(blocks.Alert{Backend: b, Since: a.since, Now: now}))
		return
	}
	shown := blockingState(b)
	if now.Sub(a.lastEdit) < w.b.cfg.AlertEditEvery && shown == a.lastShown {
		return
	}
	a.lastEdit, a.lastShown = now, shown
	w.edit(a, w.b.alertMessage(blocks.Alert{Backend: b, Since: a.since, Now: now}))
}

// resolve edits an alert whose query is gone: how long it ran and how it
// ended, no buttons. An alert whose post has not gone out yet is posted
// resolved (the outbox's latest version wins).
func (w *watcher) resolve(_ context.Context, a *alert, now time.Time) {
	w.b.metrics.alert("resolved")
	w.mu.Lock()
	a.resolved = true
	var summaryTS string
	var summaryFailed bool
	if a.summary != nil {
		summaryTS, summaryFailed = a.summary.ts, a.summary.failed
	}
	w.mu.Unlock()
	if s := a.summary; s != nil {
		s.open--
		if s.open == 0 && !summaryFailed && (summaryTS != "" || a.queued) {
			w.out.Put(outbox.Item{Key: s.key, TS: summaryTS, Msg: blocks.AlertSummaryResolved(s.total, s.since, now)})
		}
		return
	}
	// It ran at least as long as it had when last seen, one poll ago.
	w.edit(a, w.b.alertMessage(blocks.Alert{Backend: a.backend, Since: a.since, Now: now, Resolved: true, RanFor: a.backend.Duration, EndedBy: w.endedBy(a.backend.Identity)}))
}

// endedBy says which approved request ended the query, if one did.
func (w *watcher) endedBy(id pg.Identity) string {
	a, ok := w.b.requests.endedBy(context.Background(), id)
	if !ok {
		return ""
	}
	verb := "cancelled"
	if a.Action == pg.Terminate {
		verb = "terminated"
	}
	approvers := voters(a.Votes)
	if len(approvers) == 0 {
		approvers = []string{a.Decider}
	}
	return fmt.Sprintf("%s through request %s, asked by %s and approved by %s", verb, a.ID, blocks.Mentions([]string{a.Requester}), blocks.Mentions(approvers))
}

func blockingState(b pg.Backend) string {
	return fmt.Sprintf("%d/%d/%v", b.Blocking, b.BlockingTotal, b.BlockedBy)
}
