package aws

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// FleetSetter is what a Refresher changes: pg.Fleet.
type FleetSetter interface {
	Set(specs []pg.TargetSpec) (pg.FleetChange, error)
}

// Refresher keeps a fleet equal to the configured targets plus the
// discovered ones. A refresh that fails (AWS unreachable, access denied, a
// name clash, no instance found where there were some) leaves the fleet as
// it was and says so in its error, its log line and Status: a fleet is never
// emptied by a failure. Safe for concurrent use.
type Refresher struct {
	aws    *AWS
	d      Discovery
	static []pg.TargetSpec
	fleet  FleetSetter
	log    *slog.Logger
	one    sync.Mutex // one refresh at a time

	mu     sync.Mutex
	status Status
	known  int // discovered targets in the fleet
}

// Status is what the refreshes did, for /readyz, metrics and doctor.
type Status struct {
	LastAttempt time.Time
	LastSuccess time.Time      // zero until a refresh works
	Err         error          // the last refresh's error; nil when it worked
	Failures    int            // failed refreshes in a row
	Discovered  int            // discovered targets in the fleet
	Change      pg.FleetChange // what the last successful refresh changed
}

// NewRefresher refreshes fleet from d, keeping static (PGKILL_TARGETS)
// first. log may be nil.
func NewRefresher(a *AWS, d Discovery, static []pg.TargetSpec, fleet FleetSetter, log *slog.Logger) *Refresher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Refresher{aws: a, d: d, static: static, fleet: fleet, log: log}
}

// Refresh discovers once and applies the result. Call it at start-up: its
// error there (a name clash, no access) is a start-up error.
func (r *Refresher) Refresh(ctx context.Context) (pg.FleetChange, error) {
	r.one.Lock()
	defer r.one.Unlock()
	ch, n, err := r.refresh(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.LastAttempt = r.aws.now()
	if err != nil {
		r.status.Err = err
		r.status.Failures++
		r.log.Warn("RDS discovery failed: keeping the last known fleet", "error", err,
			"discovered", r.known, "failures", r.status.Failures)
		return pg.FleetChange{}, err
	}
	r.known = n
	r.status = Status{LastAttempt: r.status.LastAttempt, LastSuccess: r.status.LastAttempt, Discovered: n, Change: ch}
	if !ch.Empty() {
		r.log.Info("RDS discovery changed the fleet", "added", ch.Added, "removed", ch.Removed,
			"replaced", ch.Replaced, "relabelled", ch.Relabelled, "discovered", n)
	}
	return ch, nil
}

func (r *Refresher) refresh(ctx context.Context) (pg.FleetChange, int, error) {
	found, err := r.aws.Discover(ctx, r.d)
	if err != nil {
		return pg.FleetChange{}, 0, err
	}
	r.mu.Lock()
	known := r.known
	r.mu.Unlock()
	if len(found) == 0 && known > 0 {
		// Deleting every instance at once is rare; an answer emptied by a
		// changed policy or tag is not. Keep the targets and say so.
		return pg.FleetChange{}, 0, fmt.Errorf("discovery found no instance where there were %d: keeping them (check the tag and cluster filters and rds:DescribeDBInstances)", known)
	}
	if len(found) == 0 && len(r.static) == 0 {
		// An empty fleet would list nothing, which reads as an all-clear.
		return pg.FleetChange{}, 0, fmt.Errorf("discovery found no PostgreSQL instance and PGKILL_TARGETS is empty: no targets (check the regions, tag and cluster filters)")
	}
	specs, err := Merge(r.static, found)
	if err != nil {
		return pg.FleetChange{}, 0, err
	}
	ch, err := r.fleet.Set(specs)
	return ch, len(found), err
}

// Interval is the time between refreshes (interval= of
// PGKILL_RDS_DISCOVER), for the loop that runs them (bot/discovery).
func (r *Refresher) Interval() time.Duration { return r.d.Interval }

// Status returns the refreshes' outcome so far.
func (r *Refresher) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Merge joins configured and discovered targets, configured first. A name
// used by both, or twice by discovery (the same identifier in two regions),
// is an error.
func Merge(static, discovered []pg.TargetSpec) ([]pg.TargetSpec, error) {
	from := map[string]string{}
	out := make([]pg.TargetSpec, 0, len(static)+len(discovered))
	for _, s := range static {
		from[s.Name] = "PGKILL_TARGETS"
		out = append(out, s)
	}
	for _, s := range discovered {
		if prev, ok := from[s.Name]; ok {
			return nil, fmt.Errorf("target name %q is used twice: by %s and by the %s", s.Name, prev, s.Origin)
		}
		from[s.Name] = "the " + s.Origin
		out = append(out, s)
	}
	return out, nil
}
