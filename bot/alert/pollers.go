package alert

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// maxSpread bounds how far apart the targets' first polls are spread.
const maxSpread = 30 * time.Second

// Run polls the targets that are this replica's until ctx ends: with a
// state store that keeps leases, those whose lease it holds (the keeper
// says which, every round); else every target of the fleet, followed as it
// changes. Each target has its own goroutine: a slow target delays only
// itself.
func (w *Watcher) Run(ctx context.Context) error {
	p := &pollers{w: w, ctx: ctx, running: map[string]*poller{}, first: true}
	if w.leases != nil {
		w.leases.Run(ctx, p)
		return nil
	}
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	for {
		p.Hold(w.db.Names())
		select {
		case <-ctx.Done():
			p.Hold(nil)
			return nil
		case <-t.C:
		}
	}
}

// pollers are the running targets' goroutines.
type pollers struct {
	w       *Watcher
	ctx     context.Context
	mu      sync.Mutex
	running map[string]*poller
	first   bool // the first Hold: spread the first polls (start-up)
}

type poller struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Hold starts polling the targets not polled yet and stops polling the
// others, returning once their goroutines are done: a target handed over
// is never polled by two replicas at once.
func (p *pollers) Hold(targets []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var stopped []*poller
	for name, r := range p.running {
		if !slices.Contains(targets, name) {
			r.cancel()
			stopped = append(stopped, r)
			delete(p.running, name)
			p.w.metrics.LeaseHeld(name, false)
			p.w.log.Info("polling stopped", slog.String("target", name))
		}
	}
	for _, r := range stopped {
		<-r.done
	}
	// Many targets at start-up neither connect at once (a herd of connects
	// on one server times out together) nor poll in step; a target taken
	// over later is polled at once: its alerts wait.
	var spread time.Duration
	if p.first {
		spread = min(p.w.cfg.PollInterval, maxSpread)
		p.first = false
	}
	for _, name := range targets {
		if _, ok := p.running[name]; ok || p.ctx.Err() != nil {
			continue
		}
		ctx, cancel := context.WithCancel(p.ctx)
		r := &poller{cancel: cancel, done: make(chan struct{})}
		p.running[name] = r
		p.w.metrics.LeaseHeld(name, true)
		if p.w.leases != nil {
			p.w.log.Info("polling", slog.String("target", name))
		}
		go func() {
			defer close(r.done)
			if spread > 0 {
				select { // first polls spread, so that many targets do not connect in one herd
				case <-ctx.Done():
					return
				case <-time.After(rand.N(spread)):
				}
			}
			p.w.target(ctx, name)
		}()
	}
}

// target polls one target until ctx ends, starting with the alerts the
// state store holds for it (posted by an earlier run or another replica).
func (w *Watcher) target(ctx context.Context, name string) {
	t := time.NewTicker(w.cfg.PollInterval)
	defer t.Stop()
	var st *alertsFor
	for {
		if st == nil {
			st = w.load(ctx, name)
		}
		if st != nil && w.holds(name) {
			w.poll(ctx, st)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// holds says whether this replica is to poll target now.
func (w *Watcher) holds(target string) bool {
	return w.leases == nil || w.leases.Holds(target)
}

// storeContext bounds a poll's calls to the state store: by the end of
// this replica's lease of target (past it, another replica may have taken
// the target), else by the query timeout. It outlives shutdown's start.
func (w *Watcher) storeContext(target string) (context.Context, context.CancelFunc) {
	if w.leases == nil {
		return context.WithTimeout(w.work, w.cfg.QueryTimeout)
	}
	return context.WithDeadline(w.work, w.leases.Until(target))
}
