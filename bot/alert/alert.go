// Package alert watches the targets for runaway queries and keeps the alert
// channel up to date: one alert per query, edited in place, resolved with
// how it ended; a summary for a flood; a notice when a target goes down and
// when it comes back.
package alert

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/lease"
	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/request"
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

// Config is what the watcher is told of pgkill's settings.
type Config struct {
	Channel      string        // PGKILL_ALERT_CHANNEL
	After        time.Duration // PGKILL_ALERT_AFTER
	IdleTxAfter  time.Duration // PGKILL_IDLE_TX_ALERT_AFTER; 0: off
	PollInterval time.Duration // PGKILL_POLL_INTERVAL
	MaxPerPoll   int           // PGKILL_ALERT_MAX_PER_POLL
	EditEvery    time.Duration // PGKILL_ALERT_EDIT_INTERVAL
	QueryTimeout time.Duration // bounds one poll's listing
	Protect      match.Rules   // never alerted: protected sessions
	Ignore       match.Rules   // never alerted: PGKILL_ALERT_IGNORE
}

// Lister is what the watcher needs of the databases.
type Lister interface {
	Names() []string
	Specs() []pg.TargetSpec
	List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing
}

// Store keeps posted alerts across restarts and replicas (pg.Store); nil
// keeps them in this process only.
type Store interface {
	ClaimAlert(ctx context.Context, target, key string, doc []byte) (bool, []byte, error)
	PutAlert(ctx context.Context, target, key string, doc []byte) error
	DeleteAlert(ctx context.Context, key string) error
	Alerts(ctx context.Context, target string) (map[string][]byte, error)
}

// Requests names the request that ended a query (the approval workflow's
// store). An error means the store could not say: the alert is then left
// as it is until a poll can.
type Requests interface {
	// EndedBy finds the decided request whose signal ended id; false: none.
	EndedBy(ctx context.Context, id pg.Identity) (request.Request, bool, error)
	// InFlight reports whether an approved request is being carried out on
	// id: its alert waits for it to be recorded, so that it is credited.
	InFlight(ctx context.Context, id pg.Identity) (bool, error)
}

// Sets keeps the set of a flood summary for its Cancel all / Terminate all.
type Sets interface {
	KeepSet(ctx context.Context, set request.Set) (id string, n int)
}

// Autopilot is the rules that act on what the polls see, and what fires
// them (the request workflow); nil: no autopilot.
type Autopilot interface {
	Rules() []autopilot.Rule
	Fire(ctx context.Context, fs []autopilot.Firing, channel string)
}

// Leases says which targets are this replica's to poll (bot/lease); nil:
// every target is.
type Leases interface {
	Run(ctx context.Context, f lease.Follower)
	Holds(target string) bool
	// Until is when this replica's lease of target surely ends.
	Until(target string) time.Time
}

// Outbox is where the alert messages go.
type Outbox interface {
	Put(outbox.Item)
}

// Deps are the watcher's parts.
type Deps struct {
	DB       Lister
	Out      Outbox
	Store    Store // nil: alerts in memory
	Requests Requests
	Sets     Sets
	Leases   Leases    // nil: no leases
	Auto     Autopilot // nil: no autopilot
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	// Checked is told of every poll's result, for /readyz.
	Checked func(target string, err error)
}

// Watcher polls each target on its own schedule and keeps the alert
// channel up to date. Each target's state is touched only by its own
// goroutine, except what the outbox reports back (ts, failed), under mu.
// No poll ever waits on Slack.
type Watcher struct {
	cfg      Config
	db       Lister
	out      Outbox
	store    Store
	requests Requests
	sets     Sets
	leases   Leases
	auto     Autopilot
	metrics  *metrics.Metrics
	log      *slog.Logger
	checked  func(string, error)
	// work outlives a shutdown's start: a poll finishes what it queued.
	work context.Context

	mu sync.Mutex
}

// New makes the watcher; work bounds what a poll finishes after Run's ctx
// ends.
func New(work context.Context, cfg Config, d Deps) *Watcher {
	w := &Watcher{cfg: cfg, db: d.DB, out: d.Out, store: d.Store, requests: d.Requests, sets: d.Sets, leases: d.Leases, auto: d.Auto,
		metrics: d.Metrics, log: d.Log, checked: d.Checked, work: work}
	if w.checked == nil {
		w.checked = func(string, error) {}
	}
	return w
}

// message renders an alert with its target's role as the fleet has it now,
// so that an alert edited after a failover shows the new role.
func (w *Watcher) message(a blocks.Alert) blocks.Message {
	a.Role = w.role(a.Backend.Target)
	return blocks.AlertMessage(a)
}

// alertsFor is one target's alert state.
type alertsFor struct {
	target    string
	alerts    map[string]*alert // by alertKey
	down      bool
	downSince time.Time
	// downSaid: the outage's notice went out (Slack has it), here or from the
	// replica that held the target before; guarded by Watcher.mu.
	downSaid   bool
	downQueued bool // this process queued the notice
	pile       *pile
}

// threshold is the shortest duration any alert or autopilot rule on
// target needs: the poll asks for that, one query, and sorts afterwards.
func (w *Watcher) threshold(target string) time.Duration {
	d := w.cfg.After
	if w.cfg.IdleTxAfter > 0 {
		d = min(d, w.cfg.IdleTxAfter)
	}
	if w.auto != nil {
		if r, ok := autopilot.Threshold(w.auto.Rules(), target); ok {
			d = min(d, r)
		}
	}
	return d
}

// runaway says whether b deserves an alert.
func (w *Watcher) runaway(b pg.Backend) bool {
	switch {
	case b.BackendType != "client backend":
		return false
	case w.skip(b):
		return false
	case b.State == pg.StateActive || b.State == pg.StateFastpath:
		return b.Duration >= w.cfg.After
	case b.State.Idle():
		return w.cfg.IdleTxAfter > 0 && b.Duration >= w.cfg.IdleTxAfter
	}
	return false
}

// skip says whether a session is protected or ignored: the same parsed
// rules and matcher the listing uses.
func (w *Watcher) skip(b pg.Backend) bool {
	if _, ok := w.cfg.Protect.Match(b.User, b.Application); ok {
		return true
	}
	_, ok := w.cfg.Ignore.Match(b.User, b.Application)
	return ok
}

// poll is one round for one target: one query.
func (w *Watcher) poll(ctx context.Context, st *alertsFor) {
	qctx, cancel := context.WithTimeout(ctx, w.cfg.QueryTimeout)
	start := time.Now()
	ls := w.db.List(qctx, []string{st.target}, pg.Filter{MinDuration: w.threshold(st.target), QueryMax: pg.DefaultQueryMax})
	cancel()
	if ctx.Err() != nil || !w.holds(st.target) { // shutting down or handed over: that answer is not ours to act on
		return
	}
	// From here on the poll finishes what it starts — its state and what it
	// queues for Slack — even when shutdown begins, but its calls to the
	// state store end with the lease: past it, the target is another
	// replica's.
	ctx, cancelStore := w.storeContext(st.target)
	defer cancelStore()
	w.metrics.Polled(st.target, time.Since(start), ls[0].Err == nil)
	w.checked(st.target, ls[0].Err)
	now := time.Now()
	if err := ls[0].Err; err != nil {
		if !st.down {
			st.down, st.downSince = true, now
			w.log.Warn("target down", slog.String("target", st.target), slog.String("error", err.Error()))
		}
		w.sayDown(ctx, st, err)
		return // the alerts of a target we cannot see stay as they are
	}
	if st.down {
		st.down, st.downQueued = false, false
		w.mu.Lock()
		said := st.downSaid
		st.downSaid = false
		w.mu.Unlock()
		w.log.Info("target up", slog.String("target", st.target))
		w.forget(ctx, downKey(st.target))
		if said { // nothing was said of an outage nobody announced
			w.notice("up", st.target, now, blocks.TargetUp(st.target, now.Sub(st.downSince), now), nil)
			w.metrics.Alert("target-up")
		}
	}

	w.log.Debug("polled", slog.String("target", st.target), slog.Int("backends", len(ls[0].Backends)), slog.Int("alerts", len(st.alerts)))
	w.pileUp(ctx, st, ls[0], now)
	if w.auto != nil {
		w.auto.Fire(ctx, autopilot.Evaluate(w.auto.Rules(), ls[0]), w.cfg.Channel)
	}
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
		} else if st.pile == nil || !inQueue(b) { // the pile-up's message speaks for its queue
			fresh = append(fresh, b)
		}
	}
	for k, a := range st.alerts {
		if seen[k] || w.unconfirmed(a, now) {
			continue
		}
		if by, ok := w.endedBy(ctx, a); ok {
			w.resolve(a, now, by)
			delete(st.alerts, k)
			w.forget(ctx, k)
		}
	}
	fresh = w.claim(ctx, st, fresh, now)
	if len(fresh) > w.cfg.MaxPerPoll {
		w.flood(ctx, st, fresh, now)
		return
	}
	for _, b := range fresh {
		a := &alert{backend: b, since: now, lastEdit: now, lastShown: blockingState(b)}
		st.alerts[alertKey(b)] = a
		w.postAlert(st.target, a, w.message(blocks.Alert{Backend: b, Since: now, Now: now}))
	}
}

// put queues a message about target in the alert channel, only while this
// replica polls target — checked now and again right before it is sent —
// so that a replica whose lease ran out never posts what the new holder
// posts too.
func (w *Watcher) put(target string, it outbox.Item) {
	if !w.holds(target) {
		if it.Sent != nil {
			it.Sent("", outbox.ErrNotStill)
		}
		return
	}
	it.Channel, it.Still = w.cfg.Channel, func() bool { return w.holds(target) }
	w.out.Put(it)
}

// notice posts a one-off message (target down, target up); sent, if set,
// is told when Slack has it.
func (w *Watcher) notice(kind, target string, now time.Time, m blocks.Message, sent func(string, error)) {
	w.put(target, outbox.Item{Key: kind + "|" + target + "|" + now.Format(time.RFC3339Nano), Msg: m, Sent: sent})
}

// sayDown announces a target's outage once, across replicas: the outage is
// recorded in the state store, and marked said only once Slack has the
// notice, so a replica taking the target over says it if and only if the
// one before did not.
func (w *Watcher) sayDown(ctx context.Context, st *alertsFor, cause error) {
	w.mu.Lock()
	said := st.downSaid
	w.mu.Unlock()
	if said || st.downQueued || !w.recordDown(ctx, st.target, st.downSince, false) {
		return
	}
	st.downQueued = true
	target, since := st.target, st.downSince
	w.notice("down", target, since, blocks.TargetDown(target, cause, since), func(_ string, err error) {
		if err != nil {
			w.mu.Lock()
			st.downQueued = false // the next poll tries again
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		st.downSaid = true
		w.mu.Unlock()
		w.metrics.Alert("target-down")
		sctx, cancel := context.WithTimeout(w.work, w.cfg.QueryTimeout)
		defer cancel()
		w.recordDown(sctx, target, since, true)
	})
}

// postAlert queues a new alert; once Slack has it, its ts is recorded, in
// the state store too. Until then it has none: a failed post is retried by
// the outbox, never recorded as posted.
func (w *Watcher) postAlert(target string, a *alert, m blocks.Message) {
	a.queued = true
	key := alertKey(a.backend)
	doc := encodeAlert(a, "")
	w.put(target, outbox.Item{Key: key, Msg: m, Sent: func(ts string, err error) {
		w.mu.Lock()
		a.ts, a.failed = ts, err != nil
		resolved := a.resolved
		w.mu.Unlock()
		if err != nil {
			return
		}
		w.metrics.Alert("posted")
		if !resolved {
			w.saveDoc(target, key, withTS(doc, ts, ""))
		}
	}})
}

// edit queues a new version of a posted (or queued) alert.
func (w *Watcher) edit(a *alert, m blocks.Message) {
	w.mu.Lock()
	ts, failed := a.ts, a.failed
	w.mu.Unlock()
	if failed || ts == "" && !a.queued { // never posted, or another process posts it
		return
	}
	w.put(a.backend.Target, outbox.Item{Key: alertKey(a.backend), TS: ts, Msg: m})
}

// flood posts one summary instead of many alerts; its queries are known from
// then on and never alerted one by one.
func (w *Watcher) flood(ctx context.Context, st *alertsFor, fresh []pg.Backend, now time.Time) {
	s := &summary{key: "summary|" + st.target + "|" + now.Format(time.RFC3339Nano), total: len(fresh), open: len(fresh), since: now}
	members := map[string]*alert{}
	docs := map[string][]byte{}
	for _, b := range fresh {
		a := &alert{backend: b, summary: s, since: now, lastEdit: now, queued: true}
		st.alerts[alertKey(b)] = a
		members[alertKey(b)], docs[alertKey(b)] = a, encodeAlert(a, "")
	}
	setID, n := w.sets.KeepSet(ctx, request.Freeze([]pg.Listing{{Target: st.target, Backends: fresh}}, floodScope(st.target, len(fresh), now), now))
	msg := blocks.AlertSummary(blocks.Summary{Backends: fresh, Show: 3, BulkSet: setID, BulkCount: n, Now: now})
	w.put(st.target, outbox.Item{Key: s.key, Msg: msg, Sent: func(ts string, err error) {
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
		w.metrics.Alert("summary")
		for _, k := range open {
			w.saveDoc(st.target, k, withTS(docs[k], ts, ts))
		}
	}})
}

// orphanAfter is how long an alert may stay claimed but unposted before
// another process (or a restarted one) posts it: four polls (a minute by
// default).
func (w *Watcher) orphanAfter() time.Duration { return 4 * w.cfg.PollInterval }

// refresh edits a live alert in place, at most every PGKILL_ALERT_EDIT_INTERVAL,
// or at once when it starts or stops blocking others.
func (w *Watcher) refresh(st *alertsFor, a *alert, b pg.Backend, now time.Time) {
	a.backend = b
	if a.summary != nil {
		return
	}
	if !a.queued && a.ts == "" && now.Sub(a.since) > w.orphanAfter() {
		// Claimed (by an earlier run or another process) and still not
		// posted: that one died, or Slack kept refusing it. Better twice
		// than never.
		w.postAlert(st.target, a, w.message(blocks.Alert{Backend: b, Since: a.since, Now: now}))
		return
	}
	shown := blockingState(b)
	if now.Sub(a.lastEdit) < w.cfg.EditEvery && shown == a.lastShown {
		return
	}
	a.lastEdit, a.lastShown = now, shown
	w.edit(a, w.message(blocks.Alert{Backend: b, Since: a.since, Now: now}))
}

// resolve edits an alert whose query is gone: how long it ran and how it
// ended, no buttons. An alert whose post has not gone out yet is posted
// resolved (the outbox's latest version wins).
func (w *Watcher) resolve(a *alert, now time.Time, endedBy string) {
	w.metrics.Alert("resolved")
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
			w.put(a.backend.Target, outbox.Item{Key: s.key, TS: summaryTS, Msg: blocks.AlertSummaryResolved(s.total, s.since, now)})
		}
		return
	}
	// It ran at least as long as it had when last seen, one poll ago.
	w.edit(a, w.message(blocks.Alert{Backend: a.backend, Since: a.since, Now: now, Resolved: true, RanFor: a.backend.Duration, EndedBy: endedBy}))
}

// endedBy says how a's query ended, once that is known: through the
// approved request that ended it (named), or by itself (""). It is not
// known — false, and the alert waits for a later poll — while a request is
// still being carried out on it (its outcome then credits it), or while
// the request store cannot be read: an alert is never resolved as ended by
// itself on a read that failed.
func (w *Watcher) endedBy(ctx context.Context, a *alert) (string, bool) {
	id := a.backend.Identity
	busy, err := w.requests.InFlight(ctx, id)
	if err == nil && !busy && a.summary == nil { // a summary's line credits nobody
		var r request.Request
		var found bool
		if r, found, err = w.requests.EndedBy(ctx, id); err == nil && found {
			return credit(r), true
		}
	}
	if err != nil {
		w.log.Warn("could not read whether a request ended an alert's query; it stays until a poll can", slog.String("target", id.Target),
			slog.Int("pid", int(id.PID)), slog.String("error", err.Error()))
	}
	return "", err == nil && !busy
}

// credit names the approved request a that ended a query.
func credit(a request.Request) string {
	verb := "cancelled"
	if a.Action == pg.Terminate {
		verb = "terminated"
	}
	approvers := a.Approvers()
	return fmt.Sprintf("%s through request %s, asked by %s and approved by %s", verb, a.ID, blocks.Mentions([]string{a.Requester}), blocks.Mentions(approvers))
}

func blockingState(b pg.Backend) string {
	return fmt.Sprintf("%d/%d/%v", b.Blocking, b.BlockingTotal, b.BlockedBy)
}

// floodScope names the set of an alert summary, as its bulk card shows it.
func floodScope(target string, n int, at time.Time) string {
	return fmt.Sprintf("the %d runaway queries of the alert summary on %s at %s UTC", n, target, at.UTC().Format("15:04:05"))
}
