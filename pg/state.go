package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps pgkill's own state — request records, frozen sets, posted
// alerts and leases — in a PostgreSQL database (PGKILL_STATE_DSN), so that
// a restart loses no pending approval and several replicas decide each
// request once. Its clock (clock_timestamp()) is the one every replica's
// decisions about time are judged by.
//
// Documents are JSON written by the caller and never read here: what the
// store selects on is in columns of their own.
type Store struct {
	pool *pgxpool.Pool
}

// stateSchema is applied at open, under an advisory lock so that two
// processes starting together do not race on CREATE.
const stateSchema = `
CREATE TABLE IF NOT EXISTS pgkill_request (
  id         bigserial PRIMARY KEY,
  dedup      text NOT NULL,        -- the record's key: what it acts on
  state      text NOT NULL,
  doc        jsonb NOT NULL,
  decided_at timestamptz
);
CREATE INDEX IF NOT EXISTS pgkill_request_dedup ON pgkill_request (dedup);
-- every change bumps it: writers compare and set on it
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT clock_timestamp();
-- at most one open record per key; open ones past expires_at, and any past
-- deadline_at, are due (DueRecords); members are the keys of what it acts on
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS open boolean;
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT clock_timestamp();
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS deadline_at timestamptz;
ALTER TABLE pgkill_request ADD COLUMN IF NOT EXISTS members text[] NOT NULL DEFAULT '{}';
-- rows written before these columns: their documents are of an older
-- layout; they are closed and pruned like any other
UPDATE pgkill_request SET open = false WHERE open IS NULL;
ALTER TABLE pgkill_request ALTER COLUMN open SET NOT NULL;
DROP INDEX IF EXISTS pgkill_request_pending;
CREATE UNIQUE INDEX IF NOT EXISTS pgkill_request_open ON pgkill_request (dedup) WHERE open;
CREATE INDEX IF NOT EXISTS pgkill_request_members ON pgkill_request USING gin (members);
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
-- replicas alive (lease.go): each renews its row every lease round, with
-- the instance (process) that holds the name and the targets it knows
CREATE TABLE IF NOT EXISTS pgkill_replica (
  name    text PRIMARY KEY,
  expires timestamptz NOT NULL
);
ALTER TABLE pgkill_replica ADD COLUMN IF NOT EXISTS instance text NOT NULL DEFAULT '';
ALTER TABLE pgkill_replica ADD COLUMN IF NOT EXISTS targets text[] NOT NULL DEFAULT '{}';
-- what stops the autopilot: a person's pause (of every target or one) or
-- a rule's breaker on a target; a row per scope
CREATE TABLE IF NOT EXISTS pgkill_pause (
  scope  text PRIMARY KEY,
  reason text NOT NULL,
  by     text NOT NULL,
  at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- which replica polls which target, until when (the database's clock); a
-- free target has holder '' and has been free since expires
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
