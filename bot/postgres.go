package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/pg"
)

// Postgres is what pgkill needs of its databases (pg.Fleet). Results are
// per target: one target failing never fails the others.
type Postgres interface {
	// Names lists the targets now in the fleet, in its order; discovery
	// adds and removes targets at run time.
	Names() []string
	// Specs are the same targets with their replication role (writer,
	// reader, replica) and where they came from (pg.TargetSpec.Origin: ""
	// for PGKILL_TARGETS). Only Name, Role and Origin may be shown: DSN can
	// hold a password.
	Specs() []pg.TargetSpec
	// List lists the named targets (all when empty), each with its own error.
	List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing
	// Backend reads one pid's current state; pg.ErrNotFound when there is
	// none, errLeftFleet when the target is no longer in the fleet.
	Backend(ctx context.Context, target string, pid int32) (pg.Backend, error)
	// Signal signals only a backend that still has identity id: Sent, Gone,
	// ServerChanged or Denied; an error when the database could not be asked
	// (errLeftFleet: the target left the fleet before anything was sent).
	Signal(ctx context.Context, a pg.Action, id pg.Identity) (pg.Outcome, error)
	// Verify waits up to timeout for the signalled backend to end.
	Verify(ctx context.Context, out pg.Outcome, timeout time.Duration) (pg.Verification, error)
	// SignalSet signals a set, one statement per target, each member only if
	// it still has its identity; errs[i] when member i's target could not be asked.
	SignalSet(ctx context.Context, a pg.Action, ids []pg.Identity) ([]pg.Outcome, []error)
	// VerifySet waits up to timeout for the signalled members to end.
	VerifySet(ctx context.Context, outs []pg.Outcome, timeout time.Duration) ([]pg.Verification, []error)
	Doctor(ctx context.Context, targets []string) []pg.Report
	// Ping checks that a target answers.
	Ping(ctx context.Context, target string) error
}

// redacted is a Postgres whose backends carry query text as mode shows it
// (PGKILL_REDACT), so every message and log line built from a backend is
// safe to post. The other methods pass through.
type redacted struct {
	Postgres
	mode redact.Mode
}

// Redacted wraps db so List and Backend return query text redacted by mode,
// each backend with the fingerprint of the text as read (for audit
// records, which then never need the text itself).
func Redacted(db Postgres, mode redact.Mode) Postgres {
	return redacted{Postgres: db, mode: mode}
}

func (r redacted) show(b *pg.Backend) {
	if b.Fingerprint == "" && b.Query != "" {
		b.Fingerprint = redact.Fingerprint(b.Query)
	}
	b.Query = r.mode.Apply(b.Query)
}

func (r redacted) List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing {
	ls := r.Postgres.List(ctx, targets, f)
	for i := range ls {
		for j := range ls[i].Backends {
			r.show(&ls[i].Backends[j])
		}
	}
	return ls
}

func (r redacted) Backend(ctx context.Context, target string, pid int32) (pg.Backend, error) {
	b, err := r.Postgres.Backend(ctx, target, pid)
	r.show(&b)
	return b, err
}

// errLeftFleet is the error of an operation on a target that is no longer
// in the fleet: discovery no longer finds it (the instance was deleted, or
// its tags changed), so there is nothing to connect to.
var errLeftFleet = errors.New("left the fleet (deleted or no longer discovered)")

// errNothingSent marks an error known to have come before any signal.
var errNothingSent = errors.New("nothing was signalled")

func leftFleet(target string) error { return fmt.Errorf("target %s %w", target, errLeftFleet) }

// inFleet is a Postgres that answers for targets that left the fleet with
// errLeftFleet, said plainly, instead of the fleet's "unknown target": a
// request or an alert made before an instance was deleted still names it.
type inFleet struct {
	Postgres
}

func (f inFleet) has(target string) bool { return slices.Contains(f.Names(), target) }

func (f inFleet) Backend(ctx context.Context, target string, pid int32) (pg.Backend, error) {
	if !f.has(target) {
		return pg.Backend{}, leftFleet(target)
	}
	b, err := f.Postgres.Backend(ctx, target, pid)
	if err != nil && !f.has(target) {
		err = fmt.Errorf("%w (while it was being read): %w", leftFleet(target), err)
	}
	return b, err
}

// Signal sends nothing to a target that has left: the check comes before
// the call, so "nothing was signalled" is certain. One that leaves during
// the call may or may not have had its signal, and the error says only that
// it left.
func (f inFleet) Signal(ctx context.Context, a pg.Action, id pg.Identity) (pg.Outcome, error) {
	if !f.has(id.Target) {
		return pg.Outcome{Action: a, ID: id}, fmt.Errorf("%w: %w", leftFleet(id.Target), errNothingSent)
	}
	out, err := f.Postgres.Signal(ctx, a, id)
	if err != nil && !f.has(id.Target) {
		err = fmt.Errorf("%w while it was being signalled: %w", leftFleet(id.Target), err)
	}
	return out, err
}

func (f inFleet) Ping(ctx context.Context, target string) error {
	if !f.has(target) {
		return leftFleet(target)
	}
	return f.Postgres.Ping(ctx, target)
}

// roles maps each target to its replication role, as the fleet has it now
// (a failover changes it); targets without one are absent.
func roles(db Postgres) map[string]string {
	m := map[string]string{}
	for _, s := range db.Specs() {
		if s.Role != "" {
			m[s.Name] = s.Role
		}
	}
	return m
}

// alertMessage renders an alert with its target's role as the fleet has it
// now, so that an alert edited after a failover shows the new role.
func (b *Bot) alertMessage(a blocks.Alert) blocks.Message {
	a.Role = roles(b.db)[a.Backend.Target]
	return blocks.AlertMessage(a)
}
