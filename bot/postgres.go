package bot

import (
	"context"
	"time"

	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/pg"
)

// Postgres is what the bot needs of its databases (pg.Fleet). Results are
// per target: one target failing never fails the others.
type Postgres interface {
	// Names lists the targets now in the fleet, in its order; discovery
	// adds and removes targets at run time.
	Names() []string
	// Specs are the same targets with their replication role and where
	// they came from. Only Name, Role and Origin may be shown: DSN can hold
	// a password.
	Specs() []pg.TargetSpec
	// List lists the named targets (all when empty), each with its own error.
	List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing
	// Complete brings the blocking tree to a Degraded listing (a lock
	// pile-up held the lock table): it waits for the lock-table read, then
	// lists again; the answer may be Degraded again. Its error is in Err.
	Complete(ctx context.Context, l pg.Listing) pg.Listing
	// Backend reads one pid's current state; pg.ErrNotFound when there is none.
	Backend(ctx context.Context, target string, pid int32) (pg.Backend, error)
	// SignalVerify signals each backend that still has its identity, in the
	// statement that checks it, and watches those signalled.
	SignalVerify(ctx context.Context, action pg.Action, ids []pg.Identity, timeout time.Duration) []pg.Attempt
	// RoleSetting says what a setting is for a role's sessions in a
	// database, and where that comes from.
	RoleSetting(ctx context.Context, target, role, database, name string) (value, source string, err error)
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

func (r redacted) Complete(ctx context.Context, l pg.Listing) pg.Listing {
	l = r.Postgres.Complete(ctx, l)
	for j := range l.Backends {
		r.show(&l.Backends[j])
	}
	return l
}

func (r redacted) Backend(ctx context.Context, target string, pid int32) (pg.Backend, error) {
	b, err := r.Postgres.Backend(ctx, target, pid)
	r.show(&b)
	return b, err
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
