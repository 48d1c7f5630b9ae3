package pg

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Fleet is every target. Work on several targets runs concurrently, and one
// slow or dead target never delays or fails the others: its result carries
// the error instead. Targets can change at run time (Set: discovery adds and
// removes instances); every method is safe for concurrent use with Set, and
// an operation that started on a target removed meanwhile ends with that
// target's error.
type Fleet struct {
	opts  Options
	setMu sync.Mutex // one Set at a time

	mu      sync.RWMutex
	targets []*member // in configuration order
}

// member is one target with the spec it was made from.
type member struct {
	spec   TargetSpec
	target *Target
}

// NewFleet makes a lazily connecting target for each spec.
func NewFleet(specs []TargetSpec, opts Options) (*Fleet, error) {
	f := &Fleet{opts: opts}
	if _, err := f.Set(specs); err != nil {
		return nil, err
	}
	return f, nil
}

// Close closes every pool.
func (f *Fleet) Close() {
	f.mu.Lock()
	ms := f.targets
	f.targets = nil
	f.mu.Unlock()
	for _, m := range ms {
		m.target.Close()
	}
}

// Names lists the targets in configuration order.
func (f *Fleet) Names() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	names := make([]string, len(f.targets))
	for i, m := range f.targets {
		names[i] = m.spec.Name
	}
	return names
}

// Specs lists the targets' specs in configuration order (with their origin
// and role, for showing).
func (f *Fleet) Specs() []TargetSpec {
	f.mu.RLock()
	defer f.mu.RUnlock()
	specs := make([]TargetSpec, len(f.targets))
	for i, m := range f.targets {
		specs[i] = m.spec
	}
	return specs
}

// Target finds a target by name.
func (f *Fleet) Target(name string) (*Target, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, m := range f.targets {
		if m.spec.Name == name {
			return m.target, nil
		}
	}
	return nil, fmt.Errorf("unknown target %q", name)
}

// Listing is one target's answer to List.
type Listing struct {
	Target   string
	Backends []Backend
	Err      error
	// Hidden counts the client sessions of other roles that pgkill's role
	// cannot see (pg_stat_activity shows them as <insufficient privilege>,
	// without timestamps): they are never listed, whatever the filter, and
	// must be told about (GRANT pg_read_all_stats). Only the filter's
	// database, user and application patterns (and pid) apply: state and
	// duration are hidden too. PostgreSQL also hides the process type, so a
	// parallel or background worker running as such a role counts as well.
	Hidden int
	// NoTree says why the blocking tree is not in the listing (the
	// sessions are listed without blocking counts); "" when it is.
	NoTree string
	// Degraded: the lock table did not answer within the tree's budget (a
	// lock pile-up's deadlock checks hold it). Every session is listed
	// with its state and wait, the likely root blocker is marked
	// (Backend.LikelyRoot) and NoTree says how many sessions wait on
	// locks; signalling works as usual. Complete brings the tree.
	Degraded bool
	// LockWaits counts the sessions waiting on a heavyweight lock or on
	// the lock manager itself (where their deadlock checks queue), all of
	// the target's sessions counted, whatever the filter.
	LockWaits int

	role, hiddenRole string            // for Target.Backend's ErrHidden message
	pending          *future[lockRead] // the lock-table read a Degraded listing gave up on
	filter           Filter            // what Complete lists again
}

// List lists the named targets (all when names is empty) concurrently, in
// the order asked.
func (f *Fleet) List(ctx context.Context, names []string, filter Filter) []Listing {
	if len(names) == 0 {
		names = f.Names()
	}
	out := make([]Listing, len(names))
	var g errgroup.Group
	for i, n := range names {
		t, err := f.Target(n)
		if err != nil {
			out[i] = Listing{Target: n, Err: err}
			continue
		}
		g.Go(func() error {
			l, err := t.List(ctx, filter)
			l.Err = err
			out[i] = l
			return nil
		})
	}
	_ = g.Wait() // never fails: errors stay per target
	return out
}

// Complete brings the blocking tree to a Degraded listing of one of the
// fleet's targets; see Target.Complete. An error (ctx ended, the target
// could not be read or left the fleet) is in Listing.Err, with the rest of
// l as it was.
func (f *Fleet) Complete(ctx context.Context, l Listing) Listing {
	if !l.Degraded {
		return l
	}
	t, err := f.Target(l.Target)
	if err != nil {
		l.Err = err
		return l
	}
	full, err := t.Complete(ctx, l)
	full.Err = err
	return full
}

// Doctor checks the named targets (all when names is empty) concurrently.
func (f *Fleet) Doctor(ctx context.Context, names []string) []Report {
	var targets []*Target
	f.mu.RLock()
	for _, m := range f.targets {
		if len(names) == 0 || contains(names, m.spec.Name) {
			targets = append(targets, m.target)
		}
	}
	f.mu.RUnlock()
	out := make([]Report, len(targets))
	var g errgroup.Group
	for i, t := range targets {
		g.Go(func() error { out[i] = t.Doctor(ctx); return nil })
	}
	_ = g.Wait()
	return out
}

// Merge flattens listings into one slice, longest first.
func Merge(ls []Listing) []Backend {
	var all []Backend
	for _, l := range ls {
		all = append(all, l.Backends...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].Duration > all[j].Duration })
	return all
}

// Backend reads pid's current state on the named target.
func (f *Fleet) Backend(ctx context.Context, target string, pid int32) (Backend, error) {
	t, err := f.Target(target)
	if err != nil {
		return Backend{}, err
	}
	return t.Backend(ctx, pid)
}

// Signal sends action to the backend with identity id on its target; see
// Target.Signal for the outcomes.
func (f *Fleet) Signal(ctx context.Context, action Action, id Identity) (Outcome, error) {
	t, err := f.Target(id.Target)
	if err != nil {
		return Outcome{Action: action, ID: id}, err
	}
	return t.Signal(ctx, action, id)
}

// SignalSet signals a set of backends, one statement per target, the
// targets concurrently; see Target.SignalSet. outs[i] is the outcome for
// ids[i]; errs[i] is set when its target could not be asked (its signal may
// or may not have been sent), and then outs[i] has no Result.
func (f *Fleet) SignalSet(ctx context.Context, action Action, ids []Identity) (outs []Outcome, errs []error) {
	outs, errs = make([]Outcome, len(ids)), make([]error, len(ids))
	f.byTarget(len(ids), func(i int) string { return ids[i].Target }, func(t *Target, idx []int, err error) {
		set := make([]Identity, len(idx))
		for j, i := range idx {
			set[j] = ids[i]
			outs[i] = Outcome{Action: action, ID: ids[i]}
		}
		var got []Outcome
		if err == nil {
			got, err = t.SignalSet(ctx, action, set)
		}
		for j, i := range idx {
			if err != nil {
				errs[i] = err
			} else {
				outs[i] = got[j]
			}
		}
	})
	return outs, errs
}

// Verify waits for the backend signalled with out on its target; see
// Target.Verify.
func (f *Fleet) Verify(ctx context.Context, out Outcome, timeout time.Duration) (Verification, error) {
	t, err := f.Target(out.ID.Target)
	if err != nil {
		return Verification{Locks: -1}, err
	}
	return t.Verify(ctx, out, timeout)
}

// VerifySet verifies a set of signalled backends, one statement per target
// and poll, the targets concurrently; see Target.VerifySet. errs[i] is set
// when outs[i]'s target could not be asked.
func (f *Fleet) VerifySet(ctx context.Context, outs []Outcome, timeout time.Duration) (vs []Verification, errs []error) {
	vs, errs = make([]Verification, len(outs)), make([]error, len(outs))
	f.byTarget(len(outs), func(i int) string { return outs[i].ID.Target }, func(t *Target, idx []int, err error) {
		set := make([]Outcome, len(idx))
		for j, i := range idx {
			set[j] = outs[i]
		}
		var got []Verification
		if err == nil {
			got, err = t.VerifySet(ctx, set, timeout)
		}
		for j, i := range idx {
			if err != nil {
				errs[i], vs[i] = err, Verification{Locks: -1}
			} else {
				vs[i] = got[j]
			}
		}
	})
	return vs, errs
}

// byTarget groups n members by target name and runs fn once per target,
// concurrently; an unknown target's members get fn(nil, idx, err).
func (f *Fleet) byTarget(n int, target func(int) string, fn func(t *Target, idx []int, err error)) {
	groups := map[string][]int{}
	var order []string
	for i := range n {
		name := target(i)
		if _, ok := groups[name]; !ok {
			order = append(order, name)
		}
		groups[name] = append(groups[name], i)
	}
	var g errgroup.Group
	for _, name := range order {
		t, err := f.Target(name)
		idx := groups[name]
		g.Go(func() error { fn(t, idx, err); return nil })
	}
	_ = g.Wait()
}

// Ping checks that the named target answers a trivial statement.
func (f *Fleet) Ping(ctx context.Context, target string) error {
	t, err := f.Target(target)
	if err != nil {
		return err
	}
	return t.Ping(ctx)
}
