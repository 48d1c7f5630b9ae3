// Package lease decides which targets this replica polls for alerts when
// several replicas share a state store: it keeps the replica's leases in the
// store (pg.Store's Renew, TakeLease, …), takes at most its fair share of
// the targets — ceil(targets / live replicas), expired leases first — hands
// back what is over its share or no longer a target, and tells the alert
// watcher which targets are its to poll. No consensus of its own: every
// decision is one conditional statement in the store's PostgreSQL.
//
// A replica that cannot reach the store keeps polling only until its leases
// would have expired (counted from before its last successful renewal, on
// its own monotonic clock), then polls nothing: by then another replica may
// hold them.
package lease

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Store is what the keeper needs of the state store (pg.Store). Each method
// fails only when the store's database does.
type Store interface {
	// Renew records that replica is alive for ttl, renews its leases for
	// ttl, and returns how many replicas are alive and the leases it holds.
	Renew(ctx context.Context, replica string, ttl time.Duration) (live int, held []string, err error)
	// FreeTargets returns which of targets nobody holds, expired first.
	FreeTargets(ctx context.Context, targets []string) ([]string, error)
	// TakeLease takes target's lease unless another replica holds it.
	TakeLease(ctx context.Context, replica, target string, ttl time.Duration) (bool, error)
	ReleaseLeases(ctx context.Context, replica string, targets []string) error
	// Leave releases every lease of replica and forgets it as alive.
	Leave(ctx context.Context, replica string) error
}

// Follower is told, after every round, which targets are this replica's to
// poll. Hold must return only once it polls none of the others any more:
// their leases are released right after.
type Follower interface {
	Hold(targets []string)
}

// Keeper keeps one replica's leases. Its methods are safe for concurrent
// use.
type Keeper struct {
	store   Store
	replica string
	ttl     time.Duration
	every   time.Duration
	targets func() []string
	log     *slog.Logger

	mu    sync.Mutex
	held  []string  // sorted
	valid time.Time // the leases held are surely ours until then
	live  int
	err   error
	errAt time.Time
}

// New makes the keeper of replica's leases. A lease lasts one poll
// interval and is renewed three times in it, so a replica that dies
// without a word has its targets taken over within 4/3 of a poll interval.
func New(store Store, replica string, poll time.Duration, targets func() []string, log *slog.Logger) *Keeper {
	return &Keeper{store: store, replica: replica, ttl: poll, every: max(poll/3, 10*time.Millisecond), targets: targets, log: log}
}

// TTL is how long a lease lasts without renewal; Every how often they are renewed.
func (k *Keeper) TTL() time.Duration   { return k.ttl }
func (k *Keeper) Every() time.Duration { return k.every }

// Run keeps the leases until ctx ends, telling f after each round which
// targets are its own; then it stops f polling and hands every lease back.
func (k *Keeper) Run(ctx context.Context, f Follower) {
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		k.round(ctx, f)
		select {
		case <-ctx.Done():
			f.Hold(nil)
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := k.store.Leave(lctx, k.replica); err != nil {
				k.log.Warn("could not hand the leases back; they expire", slog.Duration("after", k.ttl), slog.String("error", err.Error()))
			} else {
				k.log.Info("leases handed back")
			}
			k.set(nil, time.Time{}, 0, nil)
			return
		case <-t.C:
		}
	}
}

// round is one renewal: renew, hand back what is not ours to keep, take
// our share, tell f.
func (k *Keeper) round(ctx context.Context, f Follower) {
	start := time.Now()
	targets := k.targets()
	rctx, cancel := context.WithTimeout(ctx, k.ttl)
	defer cancel()
	live, held, err := k.store.Renew(rctx, k.replica, k.ttl)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		k.failed(err, f)
		return
	}
	keep, drop := split(held, targets)
	share := (len(targets) + live - 1) / live
	if len(keep) > share { // a replica joined: hand some over
		drop = append(drop, keep[share:]...)
		keep = keep[:share]
	}
	if len(keep) < share {
		free, err := k.store.FreeTargets(rctx, without(targets, keep))
		if err != nil {
			k.failed(err, f)
			return
		}
		for _, t := range free {
			if len(keep) >= share {
				break
			}
			ok, err := k.store.TakeLease(rctx, k.replica, t, k.ttl)
			if err != nil {
				k.failed(err, f)
				return
			}
			if ok {
				k.log.Info("lease taken", slog.String("target", t), slog.Int("live_replicas", live), slog.Int("share", share))
				keep = append(keep, t)
			}
		}
	}
	slices.Sort(keep)
	k.set(keep, start.Add(k.ttl), live, nil)
	f.Hold(keep)
	if len(drop) > 0 {
		if err := k.store.ReleaseLeases(rctx, k.replica, drop); err != nil {
			k.log.Warn("could not hand leases back; they expire", slog.Any("targets", drop), slog.String("error", err.Error()))
		} else {
			k.log.Info("leases handed over", slog.Any("targets", drop), slog.Int("live_replicas", live), slog.Int("share", share))
		}
	}
}

// failed records a round that could not reach the store: the leases held
// stay ours until they would expire, then the replica polls nothing.
func (k *Keeper) failed(err error, f Follower) {
	k.mu.Lock()
	first := k.err == nil
	if first {
		k.errAt = time.Now()
	}
	k.err = err
	expired := !time.Now().Before(k.valid)
	held := k.held
	if expired {
		k.held = nil
	}
	k.mu.Unlock()
	if first {
		k.log.Error("state store unreachable: taking no leases; the targets held are polled until their leases expire", slog.Any("targets", held), slog.String("error", err.Error()))
	}
	if expired {
		if len(held) > 0 {
			k.log.Warn("leases expired without renewal: polling none of them", slog.Any("targets", held))
		}
		f.Hold(nil)
	}
}

func (k *Keeper) set(held []string, valid time.Time, live int, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil && err == nil {
		k.log.Info("state store reachable again", slog.Duration("after", time.Since(k.errAt)))
	}
	k.held, k.valid, k.live, k.err = held, valid, live, err
}

// Holds reports whether target is this replica's to poll now.
func (k *Keeper) Holds(target string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return time.Now().Before(k.valid) && slices.Contains(k.held, target)
}

// Status is the keeper's state, for /readyz and /metrics.
type Status struct {
	Replica string
	Held    []string  // the targets this replica polls
	Live    int       // replicas alive at the last round (0 before it)
	Err     error     // the store's error when the last round failed
	ErrAt   time.Time // since when the store fails
}

// Status returns the keeper's state now.
func (k *Keeper) Status() Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := Status{Replica: k.replica, Live: k.live, Err: k.err, ErrAt: k.errAt}
	if time.Now().Before(k.valid) {
		s.Held = slices.Clone(k.held)
	}
	return s
}

// split sorts held into the targets to keep (still targets) and to drop.
func split(held, targets []string) (keep, drop []string) {
	for _, h := range held {
		if slices.Contains(targets, h) {
			keep = append(keep, h)
		} else {
			drop = append(drop, h)
		}
	}
	slices.Sort(keep)
	return keep, drop
}

func without(all, some []string) []string {
	var out []string
	for _, t := range all {
		if !slices.Contains(some, t) {
			out = append(out, t)
		}
	}
	return out
}
