package pg

import (
	"context"
	"fmt"
	"time"
)

// Leases: each target is polled for alerts by one replica at a time, the
// holder of its lease. A lease is a row of pgkill_lease with its holder and
// an expiry on the database's clock (so the replicas' clocks do not matter);
// its holder renews it every round, and any replica may take it once it has
// expired. Each replica also keeps a row in pgkill_replica, renewed with its
// leases, so that every replica can count the live ones and take only its
// fair share of the targets.
//
// Every change is one statement, and taking a lease is one conditional
// upsert, so two replicas never both believe they took the same lease.

// ms turns a duration into the milliseconds the statements take.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// renewSQL records that replica is alive, renews every lease it holds, and
// counts the live replicas (itself included), in one round trip. Replica
// rows dead for an hour are dropped on the way.
const renewSQL = `
WITH hb AS (
  INSERT INTO pgkill_replica (name, expires) VALUES ($1, clock_timestamp() + $2::bigint * interval '1 millisecond')
  ON CONFLICT (name) DO UPDATE SET expires = excluded.expires
  RETURNING name
), gone AS (
  DELETE FROM pgkill_replica WHERE expires < clock_timestamp() - interval '1 hour' AND name <> $1
), renewed AS (
  -- Its own leases, expired or not: one that expired and nobody took is
  -- still polled by nobody else. One that another replica took has another
  -- holder, and is not touched.
  UPDATE pgkill_lease SET expires = clock_timestamp() + $2::bigint * interval '1 millisecond'
  WHERE holder = $1
  RETURNING target
)
SELECT 1 + (SELECT count(*) FROM pgkill_replica WHERE expires > clock_timestamp() AND name <> $1),
       coalesce((SELECT array_agg(target ORDER BY target) FROM renewed), '{}')`

// Renew records that replica is alive for ttl and renews every lease it
// holds for ttl. It returns how many replicas are alive (at least 1: this
// one) and the targets whose leases replica holds now.
func (s *Store) Renew(ctx context.Context, replica string, ttl time.Duration) (live int, held []string, err error) {
	if err := s.pool.QueryRow(ctx, renewSQL, replica, ms(ttl)).Scan(&live, &held); err != nil {
		return 0, nil, fmt.Errorf("state store: renew leases: %w", translate(err))
	}
	return live, held, nil
}

// freeSQL lists the targets nobody holds: expired leases first (their
// holder died, and their open alerts wait), then targets never leased.
const freeSQL = `
SELECT t FROM unnest($1::text[]) AS t
LEFT JOIN pgkill_lease l ON l.target = t
WHERE l.target IS NULL OR l.expires < clock_timestamp()
ORDER BY l.expires NULLS LAST, t`

// FreeTargets returns which of targets have no live lease, expired ones
// first.
func (s *Store) FreeTargets(ctx context.Context, targets []string) ([]string, error) {
	rows, err := s.pool.Query(ctx, freeSQL, targets)
	if err != nil {
		return nil, fmt.Errorf("state store: free targets: %w", translate(err))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("state store: free targets: %w", translate(err))
		}
		out = append(out, t)
	}
	return out, translate(rows.Err())
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

// ReleaseLeases gives up replica's leases of targets, so another replica
// may take them at once.
func (s *Store) ReleaseLeases(ctx context.Context, replica string, targets []string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM pgkill_lease WHERE holder = $1 AND target = ANY($2)`, replica, targets); err != nil {
		return fmt.Errorf("state store: release leases: %w", translate(err))
	}
	return nil
}

// Leave gives up every lease of replica and its row of the live replicas:
// a clean shutdown, so the others take its targets at once and count one
// replica less.
func (s *Store) Leave(ctx context.Context, replica string) error {
	_, err := s.pool.Exec(ctx, `
WITH l AS (DELETE FROM pgkill_lease WHERE holder = $1)
DELETE FROM pgkill_replica WHERE name = $1`, replica)
	if err != nil {
		return fmt.Errorf("state store: leave: %w", translate(err))
	}
	return nil
}

// Lease is who holds a target's lease, until when.
type Lease struct {
	Target  string
	Holder  string
	Expires time.Time
}

// Leases returns every lease, expired ones included, by target.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.pool.Query(ctx, `SELECT target, holder, expires FROM pgkill_lease ORDER BY target`)
	if err != nil {
		return nil, fmt.Errorf("state store: leases: %w", translate(err))
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		if err := rows.Scan(&l.Target, &l.Holder, &l.Expires); err != nil {
			return nil, fmt.Errorf("state store: leases: %w", translate(err))
		}
		out = append(out, l)
	}
	return out, translate(rows.Err())
}
