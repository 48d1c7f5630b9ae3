// Package fleet is the databases as pgkill's two faces, Slack and the
// command line, use them: one interface, and one way to show query text.
package fleet

import (
	"context"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// DB is what the faces need of their databases (pg.Fleet). Results are per
// target: one target failing never fails the others.
type DB interface {
	// Names lists the targets now in the fleet, in its order; discovery
	// adds and removes targets at run time.
	Names() []string
	// Specs are the same targets with their replication role and where
	// they came from (Origin "" for a configured one). Only Name, Role and
	// Origin may be shown: DSN can hold a password.
	Specs() []pg.TargetSpec
	// List lists the named targets (all when empty), each with its own
	// error and its count of sessions hidden from pgkill's role. A listing
	// whose lock table did not answer in time is Degraded (no blocking
	// tree).
	List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing
	// Complete brings the blocking tree to a Degraded listing: it waits
	// for the lock-table read, then lists again; the answer may be
	// Degraded again. Its error, if any, is in Listing.Err.
	Complete(ctx context.Context, l pg.Listing) pg.Listing
	// Backend reads one pid's current state: pg.ErrNotFound when there is
	// no such client backend, pg.ErrHidden when it belongs to a role
	// pgkill's role may not see, another error when the target could not
	// be read.
	Backend(ctx context.Context, target string, pid int32) (pg.Backend, error)
	// SignalVerify signals each backend that still has its identity (and
	// is not protected), in the statement that checks it, then watches
	// those signalled for up to timeout: one pg.Attempt per identity, in
	// order.
	SignalVerify(ctx context.Context, action pg.Action, ids []pg.Identity, timeout time.Duration) []pg.Attempt
	// RoleSetting says what a setting is for a role's sessions in a
	// database, and where that comes from (the outcome card's advice).
	RoleSetting(ctx context.Context, target, role, database, name string) (value, source string, err error)
	// Doctor checks the named targets (all when empty).
	Doctor(ctx context.Context, targets []string) []pg.Report
	// Ping checks that a target answers.
	Ping(ctx context.Context, target string) error
}

// Show turns query text as it was read into the text to show and the
// fingerprint of the text as read (for audit records, which then never
// need the text itself); bot/redact's Mode.Show is one.
type Show func(query string) (shown, fingerprint string)

// Shown wraps db so that every backend it returns (List, Complete,
// Backend) carries its query text as show makes it, and its fingerprint.
// The other methods pass through: none of them returns query text.
func Shown(db DB, show Show) DB { return shown{DB: db, show: show} }

type shown struct {
	DB
	show Show
}

func (s shown) apply(b *pg.Backend) {
	if b.Query == "" {
		return
	}
	q, fp := s.show(b.Query)
	b.Query = q
	if b.Fingerprint == "" {
		b.Fingerprint = fp
	}
}

func (s shown) List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing {
	ls := s.DB.List(ctx, targets, f)
	for i := range ls {
		for j := range ls[i].Backends {
			s.apply(&ls[i].Backends[j])
		}
	}
	return ls
}

func (s shown) Complete(ctx context.Context, l pg.Listing) pg.Listing {
	if !l.Degraded { // l itself comes back, its text shown already
		return s.DB.Complete(ctx, l)
	}
	l = s.DB.Complete(ctx, l)
	for j := range l.Backends {
		s.apply(&l.Backends[j])
	}
	return l
}

func (s shown) Backend(ctx context.Context, target string, pid int32) (pg.Backend, error) {
	b, err := s.DB.Backend(ctx, target, pid)
	s.apply(&b)
	return b, err
}
