package pg

import (
	"context"
	"fmt"
	"sort"
	"time"

	"golang.org/x/sync/errgroup"
)

// Fleet is every configured target. Work on several targets runs
// concurrently, and one slow or dead target never delays or fails the
// others: its result carries the error instead.
type Fleet struct {
	targets []*Target
}

// NewFleet makes a lazily connecting target for each spec.
func NewFleet(specs []TargetSpec, opts Options) (*Fleet, error) {
	f := &Fleet{}
	for _, s := range specs {
		t, err := NewTarget(s, opts)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.targets = append(f.targets, t)
	}
	return f, nil
}

// Close closes every pool.
func (f *Fleet) Close() {
	for _, t := range f.targets {
		t.Close()
	}
}

// Names lists the targets in configuration order.
func (f *Fleet) Names() []string {
	names := make([]string, len(f.targets))
	for i, t := range f.targets {
		names[i] = t.Name
	}
	return names
}

// Target finds a target by name.
func (f *Fleet) Target(name string) (*Target, error) {
	for _, t := range f.targets {
		if t.Name == name {
			return t, nil
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
	// must be told about (GRANT pg_read_all_stats).
	Hidden int
	// NoTree says why the blocking tree could not be computed (the sessions
	// are listed without blocking counts); "" when it was.
	NoTree string

	role, hiddenRole string // for Target.Backend's ErrHidden message
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

// Doctor checks the named targets (all when names is empty) concurrently.
func (f *Fleet) Doctor(ctx context.Context, names []string) []Report {
	var targets []*Target
	for _, t := range f.targets {
		if len(names) == 0 || contains(names, t.Name) {
			targets = append(targets, t)
		}
	}
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
