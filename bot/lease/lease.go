// Package lease decides which targets this replica polls for alerts when
// several replicas share a state store, through leases kept in the store's
// PostgreSQL: every decision is one conditional statement there.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// Store is what the keeper needs of the state store (pg.Store). Each method
// fails only when the store's database does.
type Store interface {
	// Join claims replica's name for this process (instance):
	// pg.ErrNameInUse when another live process holds it.
	Join(ctx context.Context, replica, instance string, ttl time.Duration) error
	// Renew records that replica is alive for ttl and knows targets, renews
	// its leases for ttl, and says how many replicas are alive, the leases it
	// holds, and whether another process took its name.
	Renew(ctx context.Context, replica, instance string, targets []string, ttl time.Duration) (pg.Renewal, error)
	// FreeTargets returns which of targets nobody holds, the longest free
	// first; those free longer than grace are overdue.
	FreeTargets(ctx context.Context, targets []string, grace time.Duration) ([]pg.Free, error)
	// TakeLease takes target's lease unless another replica holds it.
	TakeLease(ctx context.Context, replica, target string, ttl time.Duration) (bool, error)
	ReleaseLeases(ctx context.Context, replica string, targets []string) error
	// Leave releases every lease of replica and forgets it as alive.
	Leave(ctx context.Context, replica, instance string) error
	// KnownTargets returns every target some live replica knows.
	KnownTargets(ctx context.Context) ([]string, error)
}

// Follower is told, after every round, which targets are this replica's to
// poll. Hold must return only once it polls none of the others any more:
// their leases are released right after.
type Follower interface {
	Hold(targets []string)
}

// Keeper keeps one replica's leases: at most its fair share of the targets
// — ceil(targets / live replicas), the longest free first — plus any target
// left free for longer than a renewal round (replicas that know different
// fleets do not leave one unpolled); it hands back what is over its share
// or no longer a target, and tells the alert watcher which targets are its
// to poll. A replica that cannot reach the store keeps polling only until
// its leases would have expired (counted from before its last successful
// renewal, on its own monotonic clock), then polls nothing. Its methods are
// safe for concurrent use.
type Keeper struct {
	store    Store
	replica  string
	instance string // this process: another one claiming the name is told apart
	ttl      time.Duration
	every    time.Duration
	targets  func() []string
	log      *slog.Logger

	mu      sync.Mutex
	held    []string             // sorted
	overdue map[string]time.Time // targets taken beyond the share, when
	valid   time.Time            // the leases held are surely ours until then
	live    int
	err     error
	errAt   time.Time
}

// New makes the keeper of replica's leases. A lease lasts one poll
// interval and is renewed three times in it, so a replica that dies
// without a word has its targets taken over within 4/3 of a poll interval.
func New(store Store, replica string, poll time.Duration, targets func() []string, log *slog.Logger) *Keeper {
	return &Keeper{store: store, replica: replica, instance: instanceID(), ttl: poll, every: max(poll/3, 10*time.Millisecond), targets: targets, log: log}
}

func instanceID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Join claims the replica's name at start-up: an error (pg.ErrNameInUse)
// when another live process uses it, so that two processes never share one
// name's leases.
func (k *Keeper) Join(ctx context.Context) error {
	return k.store.Join(ctx, k.replica, k.instance, k.ttl)
}

// TTL is how long a lease lasts without renewal; Every how often they are renewed.
func (k *Keeper) TTL() time.Duration   { return k.ttl }
func (k *Keeper) Every() time.Duration { return k.every }

// Run keeps the leases until ctx ends, telling f after each round which
// targets are its own; then it stops f polling and hands every lease back.
// With f nil it takes no lease: it only says, every round, that this
// replica is alive and which targets it knows.
func (k *Keeper) Run(ctx context.Context, f Follower) {
	t := time.NewTicker(k.every)
	defer t.Stop()
	for {
		k.round(ctx, f)
		select {
		case <-ctx.Done():
			if f != nil {
				f.Hold(nil)
			}
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := k.store.Leave(lctx, k.replica, k.instance); err != nil {
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
	r, err := k.store.Renew(rctx, k.replica, k.instance, targets, k.ttl)
	if err == nil && r.Lost {
		// Another process took this name (its row expired here, in a
		// partition): its leases are that process's now.
		err = fmt.Errorf("%w: %q; polling nothing until it is free (give each replica its own PGKILL_REPLICA)", pg.ErrNameInUse, k.replica)
		k.mu.Lock()
		first := !errors.Is(k.err, pg.ErrNameInUse)
		k.mu.Unlock()
		if first {
			k.log.Error("another live pgkill process uses this replica's name: polling nothing", slog.String("error", err.Error()))
		}
		k.set(nil, time.Time{}, r.Live, err)
		if f != nil {
			f.Hold(nil)
		}
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		k.failed(err, f)
		return
	}
	live := r.Live
	if f == nil { // a heartbeat only: this replica polls nothing
		k.set(nil, start.Add(k.ttl), live, nil)
		return
	}
	keep, drop := split(r.Held, targets)
	// The share is of every target some live replica knows: replicas that
	// know different fleets still split the whole of it.
	union := len(targets)
	for _, t := range r.Others {
		if !slices.Contains(targets, t) {
			union++
		}
	}
	share := (union + live - 1) / live
	// Over its share a replica hands back only targets another replica
	// knows and may take, and not one it took overdue less than a lease
	// ago (the replica whose share it is may be one that cannot reach the
	// store, still counted live until its heartbeat expires).
	for i := len(keep) - 1; i >= 0 && len(keep) > share; i-- {
		t := keep[i]
		if slices.Contains(r.Others, t) && !k.overdueRecently(t) {
			drop = append(drop, t)
			keep = slices.Delete(keep, i, i+1)
		}
	}
	free, err := k.store.FreeTargets(rctx, without(targets, keep), k.every)
	if err != nil {
		k.failed(err, f)
		return
	}
	// Targets only this replica knows first: nobody else can poll them.
	slices.SortStableFunc(free, func(a, b pg.Free) int {
		return boolInt(slices.Contains(r.Others, a.Target)) - boolInt(slices.Contains(r.Others, b.Target))
	})
	for _, t := range free {
		mineOnly := !slices.Contains(r.Others, t.Target)
		// Over its share a replica takes only a target nobody else knows,
		// or one left free for a whole round: the replicas whose share
		// would take it did not (they cannot reach the store).
		if len(keep) >= share && !mineOnly && !t.Overdue {
			continue
		}
		ok, err := k.store.TakeLease(rctx, k.replica, t.Target, k.ttl)
		if err != nil {
			k.failed(err, f)
			return
		}
		if ok {
			k.log.Info("lease taken", slog.String("target", t.Target), slog.Int("live_replicas", live), slog.Int("share", share), slog.Bool("overdue", t.Overdue))
			keep = append(keep, t.Target)
			if t.Overdue && !mineOnly {
				k.tookOverdue(t.Target)
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
		if f != nil {
			f.Hold(nil)
		}
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

// tookOverdue remembers that target was taken beyond the share.
func (k *Keeper) tookOverdue(target string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.overdue == nil {
		k.overdue = map[string]time.Time{}
	}
	k.overdue[target] = time.Now()
}

// overdueRecently reports whether target was taken beyond the share less
// than a lease ago.
func (k *Keeper) overdueRecently(target string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	at, ok := k.overdue[target]
	if ok && time.Since(at) >= k.ttl {
		delete(k.overdue, target)
		return false
	}
	return ok
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Holds reports whether target is this replica's to poll now.
func (k *Keeper) Holds(target string) bool {
	return k.Until(target).After(time.Now())
}

// Until is when this replica's lease of target surely ends (zero when it
// holds none): what a poll of target may do must be done by then.
func (k *Keeper) Until(target string) time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !slices.Contains(k.held, target) {
		return time.Time{}
	}
	return k.valid
}

// Known returns every target some live replica knows, from the store: a
// target none knows has left every fleet, whatever this replica's own view.
func (k *Keeper) Known(ctx context.Context) ([]string, error) {
	return k.store.KnownTargets(ctx)
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
