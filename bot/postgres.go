package bot

import (
	"context"
	"time"

	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/pg"
)

// Postgres is what pgkill needs of its databases (pg.Fleet). Results are
// per target: one target failing never fails the others.
type Postgres interface {
	Names() []string
	// List lists the named targets (all when empty), each with its own error.
	List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing
	// Backend reads one pid's current state; pg.ErrNotFound when there is none.
	Backend(ctx context.Context, target string, pid int32) (pg.Backend, error)
	// Signal signals only a backend that still has identity id: Sent, Gone,
	// ServerChanged or Denied; an error when the database could not be asked.
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
