package bot

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
)

type alert struct {
	backend   pg.Backend
	ts        string // the alert message, or the summary it is part of
	summary   *summary
	since     time.Time
	lastEdit  time.Time
	lastShown string // what the last edit showed that matters (blocking)
}

type summary struct {
	ts    string
	total int
	open  int // queries of the summary still running
	since time.Time
}

// watcher polls each target on its own schedule and keeps the alert channel
// up to date. Each target's state is touched only by its own goroutine.
type watcher struct {
	b *Bot

	protect match.Rules // never alerted: protected sessions
	ignore  match.Rules // never alerted: PGKILL_ALERT_IGNORE

	pace     time.Duration // between posts: Slack allows about one message per second per channel
	postMu   sync.Mutex
	lastPost time.Time
}

// newWatcher makes the alert watcher; the rules were checked by Validate.
func newWatcher(b *Bot) *watcher {
	w := &watcher{b: b, pace: time.Second}
	w.protect, _ = b.cfg.ProtectRules()
	w.ignore, _ = b.cfg.AlertIgnoreRules()
	return w
}

// alertsFor is one target's alert state.
type alertsFor struct {
	target    string
	alerts    map[string]*alert // by alertKey
	down      bool
	downSince time.Time
}

// run polls every target until ctx ends; a slow target delays only itself.
func (w *watcher) run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range w.b.targets() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := w.load(ctx, name)
			t := time.NewTicker(w.b.cfg.PollInterval)
			defer t.Stop()
			for {
				w.poll(ctx, st)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	wg.Wait()
	return nil
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
	ls := w.b.db.List(qctx, []string{st.target}, pg.Filter{MinDuration: w.threshold()})
	cancel()
	if ctx.Err() != nil { // shutting down: that error says nothing about the target
		return
	}
	// From here on the poll finishes what it starts — posts and their state —
	// even when shutdown begins, within the grace period of in-flight work.
	ctx = w.b.work
	w.b.metrics.polled(st.target, time.Since(start), ls[0].Err == nil)
	w.b.health.checked(st.target, ls[0].Err, w.b.now())
	now := w.b.now()
	if err := ls[0].Err; err != nil {
		if !st.down {
			st.down, st.downSince = true, now
			w.b.log.Warn("target down", slog.String("target", st.target), slog.String("error", err.Error()))
			w.post(ctx, blocks.TargetDown(st.target, err, now))
			w.b.metrics.alert("target-down")
		}
		return // the alerts of a target we cannot see stay as they are
	}
	if st.down {
		st.down = false
		w.b.log.Info("target up", slog.String("target", st.target))
		w.post(ctx, blocks.TargetUp(st.target, now.Sub(st.downSince), now))
		w.b.metrics.alert("target-up")
	}

	w.b.log.Debug("polled", slog.String("target", st.target), slog.Int("backends", len(ls[0].Backends)), slog.Int("alerts", len(st.alerts)))
	seen := map[string]bool{}
	var fresh []pg.Backend
	for _, b := range ls[0].Backends {
		if !w.runaway(b) {
			continue
		}
		k := alertKey(b)
		seen[k] = true
		if a, ok := st.alerts[k]; ok {
			w.refresh(ctx, a, b, now)
		} else {
			fresh = append(fresh, b)
		}
	}
	for k, a := range st.alerts {
		if !seen[k] {
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
		a.ts = w.post(ctx, blocks.AlertMessage(blocks.Alert{Backend: b, Since: now, Now: now}))
		st.alerts[alertKey(b)] = a // even when posting failed: one attempt per query, never a storm of retries
		w.save(ctx, st.target, alertKey(b), a)
		w.b.metrics.alert("posted")
	}
}

// flood posts one summary instead of many alerts; its queries are known from
// then on and never alerted one by one.
func (w *watcher) flood(ctx context.Context, st *alertsFor, fresh []pg.Backend, now time.Time) {
	s := &summary{total: len(fresh), open: len(fresh), since: now}
	s.ts = w.post(ctx, blocks.AlertSummary(fresh, 3, now))
	for _, b := range fresh {
		a := &alert{backend: b, ts: s.ts, summary: s, since: now, lastEdit: now}
		st.alerts[alertKey(b)] = a
		w.save(ctx, st.target, alertKey(b), a)
	}
	w.b.metrics.alert("summary")
}

// refresh edits a live alert in place, at most every PGKILL_ALERT_EDIT_INTERVAL,
// or at once when it starts or stops blocking others.
func (w *watcher) refresh(ctx context.Context, a *alert, b pg.Backend, now time.Time) {
	a.backend = b
	if a.summary != nil || a.ts == "" {
		return
	}
	shown := blockingState(b)
	if now.Sub(a.lastEdit) < w.b.cfg.AlertEditEvery && shown == a.lastShown {
		return
	}
	a.lastEdit, a.lastShown = now, shown
	_ = w.b.update(ctx, w.b.cfg.AlertChannel, a.ts, blocks.AlertMessage(blocks.Alert{Backend: b, Since: a.since, Now: now}))
}

// resolve edits an alert whose query is gone: how long it ran and how it
// ended, no buttons.
func (w *watcher) resolve(ctx context.Context, a *alert, now time.Time) {
	w.b.metrics.alert("resolved")
	if a.summary != nil {
		a.summary.open--
		if a.summary.open == 0 && a.summary.ts != "" {
			_ = w.b.update(ctx, w.b.cfg.AlertChannel, a.summary.ts, blocks.AlertSummaryResolved(a.summary.total, a.summary.since, now))
		}
		return
	}
	if a.ts == "" {
		return
	}
	// It ran at least as long as it had when last seen, one poll ago.
	m := blocks.AlertMessage(blocks.Alert{Backend: a.backend, Since: a.since, Now: now, Resolved: true, RanFor: a.backend.Duration, EndedBy: w.endedBy(a.backend.Identity)})
	_ = w.b.update(ctx, w.b.cfg.AlertChannel, a.ts, m)
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
	return fmt.Sprintf("%s through request %s, asked by %s and approved by %s", verb, a.ID, blocks.Mentions([]string{a.Requester}), blocks.Mentions([]string{a.Decider}))
}

func blockingState(b pg.Backend) string {
	return fmt.Sprintf("%d/%d/%v", b.Blocking, b.BlockingTotal, b.BlockedBy)
}

// post posts to the alert channel, paced; it returns the ts ("" on failure,
// which slackCall has logged).
func (w *watcher) post(ctx context.Context, m blocks.Message) string {
	w.postMu.Lock()
	if wait := w.pace - time.Since(w.lastPost); wait > 0 {
		_ = sleep(ctx, wait)
	}
	w.lastPost = time.Now()
	w.postMu.Unlock()
	ts, _ := w.b.post(ctx, w.b.cfg.AlertChannel, "", m)
	return ts
}
