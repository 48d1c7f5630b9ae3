package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps pgkill's own state — approval requests and posted alerts — in
// a PostgreSQL database (PGKILL_STATE_DSN), so that a restart loses no
// pending approval and re-posts no alert, and so that two bot processes
// still decide each request exactly once: every change of a request is one
// UPDATE … WHERE version = <the version read>, so a change made on a stale
// copy is refused instead of overwriting a concurrent one.
//
// Documents are opaque JSON written by the caller; the store only knows
// ids, states, deduplication keys and times.
type Store struct {
	pool *pgxpool.Pool
}

// stateSchema is applied at open, under an advisory lock so that two
// processes starting together do not race on CREATE.
const stateSchema = `
CREATE TABLE IF NOT EXISTS pgkill_request (
  id         bigserial PRIMARY KEY,
  dedup      text NOT NULL,        -- action and backend identity
  state      text NOT NULL,
  doc        jsonb NOT NULL,
  decided_at timestamptz
);
-- one pending request per action and backend
CREATE UNIQUE INDEX IF NOT EXISTS pgkill_request_pending ON pgkill_request (dedup) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS pgkill_request_dedup ON pgkill_request (dedup);
-- every change bumps it: writers compare and set on it
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
-- when it last changed, by the database's clock (StaleRequests)
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT clock_timestamp();
-- sets of backends a listing matched, for its Cancel all / Terminate all
CREATE TABLE IF NOT EXISTS pgkill_set (
  id      bigserial PRIMARY KEY,
  doc     jsonb NOT NULL,
  created timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS pgkill_alert (
  key    text PRIMARY KEY,          -- target and backend identity
  target text NOT NULL,
  doc    jsonb NOT NULL
);
-- replicas alive (lease.go): each renews its row every lease round
CREATE TABLE IF NOT EXISTS pgkill_replica (
  name    text PRIMARY KEY,
  expires timestamptz NOT NULL
);
-- which replica polls which target, until when (the database's clock)
CREATE TABLE IF NOT EXISTS pgkill_lease (
  target  text PRIMARY KEY,
  holder  text NOT NULL,
  expires timestamptz NOT NULL
);`

// stateLock is the advisory lock key for schema changes ("pgkill" in hex).
const stateLock = 0x70676b696c6c

// OpenStore connects to dsn and creates the tables when missing.
func OpenStore(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("state store: invalid DSN: %s", redact(err.Error()))
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = AppName + "-state"
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = "5000"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state store: %s", redact(err.Error()))
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(stateLock)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, stateSchema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("state store: create tables: %w", translate(err))
	}
	return &Store{pool: pool}, nil
}

// Close releases the pool.
func (s *Store) Close() { s.pool.Close() }

// StoredRequest is one approval request as stored.
type StoredRequest struct {
	ID      int64
	State   string
	Version int64 // changes with every update: pass it back to Update
	Doc     []byte
}

// AddRequest stores a new pending request with doc, unless a request with
// the same dedup key is pending: then it returns that one and false.
func (s *Store) AddRequest(ctx context.Context, dedup string, doc []byte) (StoredRequest, bool, error) {
	var r StoredRequest
	err := s.pool.QueryRow(ctx, `
INSERT INTO pgkill_request (dedup, state, doc) VALUES ($1, 'pending', $2)
ON CONFLICT (dedup) WHERE state = 'pending' DO NOTHING
RETURNING id, state, version, doc`, dedup, doc).Scan(&r.ID, &r.State, &r.Version, &r.Doc)
	if err == nil {
		return r, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return r, false, fmt.Errorf("state store: add request: %w", translate(err))
	}
	err = s.pool.QueryRow(ctx, `SELECT id, state, version, doc FROM pgkill_request WHERE dedup = $1 AND state = 'pending'`, dedup).
		Scan(&r.ID, &r.State, &r.Version, &r.Doc)
	if errors.Is(err, pgx.ErrNoRows) { // decided in between: try once more
		return s.AddRequest(ctx, dedup, doc)
	}
	if err != nil {
		return r, false, fmt.Errorf("state store: add request: %w", translate(err))
	}
	return r, false, nil
}

// Request reads one request; ErrNotFound when there is none.
func (s *Store) Request(ctx context.Context, id int64) (StoredRequest, error) {
	r := StoredRequest{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT state, version, doc FROM pgkill_request WHERE id = $1`, id).Scan(&r.State, &r.Version, &r.Doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("request %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("state store: request %d: %w", id, translate(err))
	}
	return r, nil
}

// Update writes request id's new state and doc, in one statement, if and
// only if it is still at version (as read): it reports false, changing
// nothing, when somebody else changed it since. The first move to a final
// state (not pending or approved) records when it was decided.
func (s *Store) Update(ctx context.Context, id, version int64, state string, doc []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
UPDATE pgkill_request SET state = $3, doc = $4, version = version + 1, updated_at = clock_timestamp(),
       decided_at = CASE WHEN $3 IN ('pending', 'approved') THEN NULL ELSE coalesce(decided_at, clock_timestamp()) END
WHERE id = $1 AND version = $2`, id, version, state, doc)
	if err != nil {
		return false, fmt.Errorf("state store: request %d → %s: %w", id, state, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// RequestsByDedup returns the requests with any of the dedup keys in state.
func (s *Store) RequestsByDedup(ctx context.Context, dedups []string, state string) ([]StoredRequest, error) {
	return s.requests(ctx, `SELECT id, state, version, doc FROM pgkill_request WHERE dedup = ANY($1) AND state = $2 ORDER BY id`, dedups, state)
}

// StaleRequests returns the requests in state that have not changed for
// age, by the database's clock: a process clock that runs ahead (another
// replica's, or a test's) cannot make a live request look abandoned.
func (s *Store) StaleRequests(ctx context.Context, state string, age time.Duration) ([]StoredRequest, error) {
	return s.requests(ctx, `SELECT id, state, version, doc FROM pgkill_request
WHERE state = $1 AND updated_at < clock_timestamp() - $2::bigint * interval '1 millisecond' ORDER BY id`, state, age.Milliseconds())
}

// RequestsWithMember returns the requests in state whose document lists a
// member with that target and pid (bulk requests: Members[].target, .pid):
// found in SQL with jsonb containment, not by decoding every request.
func (s *Store) RequestsWithMember(ctx context.Context, target string, pid int32, state string) ([]StoredRequest, error) {
	return s.requests(ctx, `SELECT id, state, version, doc FROM pgkill_request
WHERE state = $1 AND doc @> jsonb_build_object('Members', jsonb_build_array(jsonb_build_object('target', $2::text, 'pid', $3::int)))
ORDER BY id`, state, target, pid)
}

// RequestsIn returns every request in state, oldest first.
func (s *Store) RequestsIn(ctx context.Context, state string) ([]StoredRequest, error) {
	return s.requests(ctx, `SELECT id, state, version, doc FROM pgkill_request WHERE state = $1 ORDER BY id`, state)
}

func (s *Store) requests(ctx context.Context, sql string, args ...any) ([]StoredRequest, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("state store: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StoredRequest, error) {
		var r StoredRequest
		return r, row.Scan(&r.ID, &r.State, &r.Version, &r.Doc)
	})
	if err != nil {
		return nil, fmt.Errorf("state store: %w", translate(err))
	}
	return out, nil
}

// PruneRequests deletes requests decided before t, and sets made before it.
func (s *Store) PruneRequests(ctx context.Context, before time.Time) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM pgkill_request WHERE decided_at < $1`, before); err != nil {
		return fmt.Errorf("state store: prune: %w", translate(err))
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM pgkill_set WHERE created < $1`, before); err != nil {
		return fmt.Errorf("state store: prune: %w", translate(err))
	}
	return nil
}

// PutSet stores a set of backends (an opaque document) and returns its id.
func (s *Store) PutSet(ctx context.Context, doc []byte) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `INSERT INTO pgkill_set (doc) VALUES ($1) RETURNING id`, doc).Scan(&id); err != nil {
		return 0, fmt.Errorf("state store: put set: %w", translate(err))
	}
	return id, nil
}

// Set reads a set stored by PutSet; false when there is none (pruned).
func (s *Store) Set(ctx context.Context, id int64) ([]byte, bool, error) {
	var doc []byte
	err := s.pool.QueryRow(ctx, `SELECT doc FROM pgkill_set WHERE id = $1`, id).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state store: set %d: %w", id, translate(err))
	}
	return doc, true, nil
}

// ClaimAlert records that an alert for key is being posted. It reports
// false, with the stored doc, when another process (or an earlier run)
// already claimed it.
func (s *Store) ClaimAlert(ctx context.Context, target, key string, doc []byte) (bool, []byte, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO pgkill_alert (key, target, doc) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`, key, target, doc)
	if err != nil {
		return false, nil, fmt.Errorf("state store: claim alert: %w", translate(err))
	}
	if tag.RowsAffected() == 1 {
		return true, doc, nil
	}
	var stored []byte
	err = s.pool.QueryRow(ctx, `SELECT doc FROM pgkill_alert WHERE key = $1`, key).Scan(&stored)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, nil, fmt.Errorf("state store: claim alert: %w", translate(err))
	}
	return false, stored, nil
}

// PutAlert replaces the doc of an alert claimed before. An alert deleted
// meanwhile stays deleted: the replica that polls its target now resolved
// it, and a late record of its post (from a replica that lost the lease)
// must not bring it back to be resolved twice.
func (s *Store) PutAlert(ctx context.Context, target, key string, doc []byte) error {
	_, err := s.pool.Exec(ctx, `UPDATE pgkill_alert SET doc = $3 WHERE key = $1 AND target = $2`, key, target, doc)
	if err != nil {
		return fmt.Errorf("state store: put alert: %w", translate(err))
	}
	return nil
}

// DeleteAlert forgets a resolved alert.
func (s *Store) DeleteAlert(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM pgkill_alert WHERE key = $1`, key); err != nil {
		return fmt.Errorf("state store: delete alert: %w", translate(err))
	}
	return nil
}

// Alerts returns the stored alerts of target by key.
func (s *Store) Alerts(ctx context.Context, target string) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, doc FROM pgkill_alert WHERE target = $1`, target)
	if err != nil {
		return nil, fmt.Errorf("state store: alerts: %w", translate(err))
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var k string
		var d []byte
		if err := rows.Scan(&k, &d); err != nil {
			return nil, fmt.Errorf("state store: alerts: %w", translate(err))
		}
		out[k] = d
	}
	return out, translate(rows.Err())
}
