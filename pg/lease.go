package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Leases: each target is polled for alerts by one replica at a time, the
// holder of its lease. A lease is a row of pgkill_lease with its holder and
// an expiry on the database's clock (so the replicas' clocks do not matter);
// its holder renews it every round, and any replica may take it once it has
// expired. Each replica also keeps a row in pgkill_replica: the process
// (instance) that holds its name, the targets it knows, renewed with its
// leases, so that every replica can count the live ones, take only its fair
// share, and tell a target that left every replica's fleet from one that a
// replica has not discovered yet.
//
// Every change is one statement, and taking a lease is one conditional
// upsert, so two replicas never both believe they took the same lease.

// ms turns a duration into the milliseconds the statements take.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// joinSQL claims a replica's name for an instance: it takes the row when
// free, expired or its own, and otherwise returns who holds it.
const joinSQL = `
WITH claim AS (
  INSERT INTO pgkill_replica (name, instance, expires) VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 millisecond')
  ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, expires = excluded.expires
  WHERE pgkill_replica.instance = excluded.instance OR pgkill_replica.expires < clock_timestamp()
  RETURNING name
)
SELECT (SELECT count(*) FROM claim) = 1,
       coalesce((SELECT instance FROM pgkill_replica WHERE name = $1), ''),
       coalesce((SELECT extract(epoch FROM clock_timestamp() - (expires - $3::bigint * interval '1 millisecond')) FROM pgkill_replica WHERE name = $1), 0)`

// ErrNameInUse is the error of a replica name held by another live process.
var ErrNameInUse = errors.New("replica name in use by another live pgkill process")

// Join claims replica's name for instance for ttl: ErrNameInUse (saying
// which instance, seen how long ago) when another live process holds it.
func (s *Store) Join(ctx context.Context, replica, instance string, ttl time.Duration) error {
	var ok bool
	var other string
	var seen float64
	if err := s.pool.QueryRow(ctx, joinSQL, replica, instance, ms(ttl)).Scan(&ok, &other, &seen); err != nil {
		return fmt.Errorf("state store: join as %s: %w", replica, translate(err))
	}
	if !ok {
		return fmt.Errorf("%w: %q is held by instance %s, which renewed it %s ago", ErrNameInUse, replica, other, time.Duration(seen*float64(time.Second)).Round(time.Millisecond))
	}
	return nil
}

// renewSQL records that replica (instance) is alive and which targets it
// knows, renews every lease it holds, registers the targets it knows that
// have no lease row yet as free since now, and counts the live replicas
// (itself included), in one round trip. A name another live instance holds
// now is not renewed, nor are its leases. Replica rows dead for an hour are
// dropped on the way.
const renewSQL = `
WITH hb AS (
  INSERT INTO pgkill_replica (name, instance, targets, expires) VALUES ($1, $2, $3, clock_timestamp() + $4::bigint * interval '1 millisecond')
  ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, targets = excluded.targets, expires = excluded.expires
  WHERE pgkill_replica.instance = excluded.instance OR pgkill_replica.expires < clock_timestamp()
  RETURNING name
), gone AS (
  DELETE FROM pgkill_replica WHERE expires < clock_timestamp() - interval '1 hour' AND name <> $1
), renewed AS (
  -- Its own leases, expired or not: one that expired and nobody took is
  -- still polled by nobody else. One that another replica took has another
  -- holder, and is not touched.
  UPDATE pgkill_lease SET expires = clock_timestamp() + $4::bigint * interval '1 millisecond'
  WHERE holder = $1 AND EXISTS (SELECT 1 FROM hb)
  RETURNING target
), known AS (
  INSERT INTO pgkill_lease (target, holder, expires) SELECT t, '', clock_timestamp() FROM unnest($3::text[]) AS t
  ON CONFLICT (target) DO NOTHING
), forgotten AS (
  -- free for an hour and known to no live replica: a target that left
  DELETE FROM pgkill_lease l WHERE l.holder = '' AND l.expires < clock_timestamp() - interval '1 hour'
    AND NOT EXISTS (SELECT 1 FROM pgkill_replica r WHERE r.expires > clock_timestamp() AND l.target = ANY(r.targets))
)
SELECT EXISTS (SELECT 1 FROM hb),
       1 + (SELECT count(*) FROM pgkill_replica WHERE expires > clock_timestamp() AND name <> $1),
       coalesce((SELECT array_agg(target ORDER BY target) FROM renewed), '{}'),
       coalesce((SELECT array_agg(DISTINCT t ORDER BY t) FROM pgkill_replica, unnest(targets) AS t
                 WHERE expires > clock_timestamp() AND name <> $1), '{}')`

// Renewal is what one renewal found.
type Renewal struct {
	Live int      // replicas alive, this one included
	Held []string // the targets whose leases this replica holds now
	// Lost: another live process holds this replica's name now; nothing
	// was renewed.
	Lost bool
	// Others are the targets the other live replicas know.
	Others []string
}

// Renew records that replica (instance) is alive for ttl and knows
// targets, and renews every lease it holds for ttl.
func (s *Store) Renew(ctx context.Context, replica, instance string, targets []string, ttl time.Duration) (Renewal, error) {
	var r Renewal
	var mine bool
	if targets == nil {
		targets = []string{}
	}
	if err := s.pool.QueryRow(ctx, renewSQL, replica, instance, targets, ms(ttl)).Scan(&mine, &r.Live, &r.Held, &r.Others); err != nil {
		return r, fmt.Errorf("state store: renew leases: %w", translate(err))
	}
	r.Lost = !mine
	if r.Lost {
		r.Held = nil
	}
	return r, nil
}

// Free is a target whose lease nobody holds.
type Free struct {
	Target string
	// Overdue: free for longer than the caller's grace; the replicas whose
	// share would take it have not.
	Overdue bool
}

// freeSQL lists the targets nobody holds, the longest free first (their
// holder died, and their open alerts wait), then targets never leased.
const freeSQL = `
SELECT t, coalesce(l.expires < clock_timestamp() - $2::bigint * interval '1 millisecond', false)
FROM unnest($1::text[]) AS t
LEFT JOIN pgkill_lease l ON l.target = t
WHERE l.target IS NULL OR l.expires < clock_timestamp()
ORDER BY l.expires NULLS LAST, t`

// FreeTargets returns which of targets have no live lease, the longest
// free first; those free for longer than grace are Overdue.
func (s *Store) FreeTargets(ctx context.Context, targets []string, grace time.Duration) ([]Free, error) {
	rows, err := s.pool.Query(ctx, freeSQL, targets, ms(grace))
	if err != nil {
		return nil, fmt.Errorf("state store: free targets: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Free, error) {
		var f Free
		return f, row.Scan(&f.Target, &f.Overdue)
	})
	if err != nil {
		return nil, fmt.Errorf("state store: free targets: %w", translate(err))
	}
	return out, nil
}

// takeSQL takes or renews one lease in one statement: it inserts the lease,
// or takes it over only when replica holds it already or it has expired.
// Two replicas taking the same expired lease serialise on its row, and the
// second sees the first one's fresh expiry and takes nothing.
const takeSQL = `
INSERT INTO pgkill_lease (target, holder, expires) VALUES ($1, $2, clock_timestamp() + $3::bigint * interval '1 millisecond')
ON CONFLICT (target) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
WHERE pgkill_lease.holder = excluded.holder OR pgkill_lease.expires < clock_timestamp()
RETURNING target`

// TakeLease takes target's lease for replica for ttl; false when another
// replica holds it and it has not expired.
func (s *Store) TakeLease(ctx context.Context, replica, target string, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, takeSQL, target, replica, ms(ttl))
	if err != nil {
		return false, fmt.Errorf("state store: take lease of %s: %w", target, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLeases gives up replica's leases of targets, free from now, so
// another replica may take them at once.
func (s *Store) ReleaseLeases(ctx context.Context, replica string, targets []string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE pgkill_lease SET holder = '', expires = clock_timestamp() WHERE holder = $1 AND target = ANY($2)`, replica, targets); err != nil {
		return fmt.Errorf("state store: release leases: %w", translate(err))
	}
	return nil
}

// Leave gives up every lease of replica and, if instance still holds the
// name, its row of the live replicas: a clean shutdown, so the others take
// its targets at once and count one replica less.
func (s *Store) Leave(ctx context.Context, replica, instance string) error {
	_, err := s.pool.Exec(ctx, `
WITH l AS (UPDATE pgkill_lease SET holder = '', expires = clock_timestamp()
           WHERE holder = $1 AND EXISTS (SELECT 1 FROM pgkill_replica WHERE name = $1 AND instance = $2))
DELETE FROM pgkill_replica WHERE name = $1 AND instance = $2`, replica, instance)
	if err != nil {
		return fmt.Errorf("state store: leave: %w", translate(err))
	}
	return nil
}

// KnownTargets returns every target some live replica knows: a target
// none knows has left every fleet.
func (s *Store) KnownTargets(ctx context.Context) ([]string, error) {
	var out []string
	err := s.pool.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT t ORDER BY t), '{}')
FROM pgkill_replica, unnest(targets) AS t WHERE expires > clock_timestamp()`).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("state store: known targets: %w", translate(err))
	}
	return out, nil
}

// Lease is who holds a target's lease, until when.
type Lease struct {
	Target  string
	Holder  string // "" when free
	Expires time.Time
}

// Leases returns every lease, expired and free ones included, by target.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `SELECT target, holder, expires FROM pgkill_lease ORDER BY target`)
	if err != nil {
		return nil, fmt.Errorf("state store: leases: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Lease, error) {
		var l Lease
		return l, row.Scan(&l.Target, &l.Holder, &l.Expires)
	})
	if err != nil {
		return nil, fmt.Errorf("state store: leases: %w", translate(err))
	}
	return out, nil
}
