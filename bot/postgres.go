package bot

import (
	"context"
	"time"

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
	Doctor(ctx context.Context, targets []string) []pg.Report
	// Ping checks that a target answers.
	Ping(ctx context.Context, target string) error
}
