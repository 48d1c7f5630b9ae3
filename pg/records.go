package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Record is one request as the state store keeps it: the columns the store
// selects and orders on, and the caller's document, which it never reads.
// Times are the store's own (clock_timestamp()), set by the statements.
type Record struct {
	ID      int64
	Key     string // at most one open record has a given key
	State   string
	Open    bool
	Version int64 // bumped by every update: pass it back to UpdateRecord
	Created time.Time
	// Expires: an open record past it is due. Deadline: any record past it
	// is due. Decided: when it was closed. Zero: none.
	Expires, Deadline, Decided time.Time
	Members                    []string // keys of what it acts on (RecordsWith)
	Doc                        []byte
	// Before, when set, is for UpdateRecord only: the write happens only
	// while the store's clock is still before it (a step judged on an
	// earlier read of the clock that holds only until then). Not stored.
	Before time.Time
}

const recordColumns = `id, dedup, state, open, version, created_at, expires_at, deadline_at, decided_at, members, doc`

func scanRecord(row pgx.Row) (Record, error) {
	var r Record
	var expires, deadline, decided *time.Time
	err := row.Scan(&r.ID, &r.Key, &r.State, &r.Open, &r.Version, &r.Created, &expires, &deadline, &decided, &r.Members, &r.Doc)
	r.Expires, r.Deadline, r.Decided = deref(expires), deref(deadline), deref(decided)
	return r, err
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// at turns a zero time into NULL.
func at(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// AddRecord stores r as a new open record, created now by the store's
// clock, expiring ttl later and due at deadline after (0: never), unless an
// open record with r.Key exists: then it returns that one and false.
func (s *Store) AddRecord(ctx context.Context, r Record, ttl, deadline time.Duration) (Record, bool, error) {
	row := s.pool.QueryRow(ctx, `
INSERT INTO pgkill_request (dedup, state, open, doc, members, created_at, expires_at, deadline_at)
SELECT $1, $2, true, $3, $4, now, now + $5::bigint * interval '1 millisecond',
       CASE WHEN $6::bigint > 0 THEN now + $6::bigint * interval '1 millisecond' END
FROM (SELECT clock_timestamp() AS now) c
ON CONFLICT (dedup) WHERE open DO NOTHING
RETURNING `+recordColumns, r.Key, r.State, r.Doc, members(r.Members), ms(ttl), ms(deadline))
	got, err := scanRecord(row)
	if err == nil {
		return got, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return got, false, fmt.Errorf("state store: add request: %w", translate(err))
	}
	got, ok, err := s.OpenRecord(ctx, r.Key)
	switch {
	case err != nil:
		return got, false, err
	case !ok: // closed in between: add it now
		return s.AddRecord(ctx, r, ttl, deadline)
	}
	return got, false, nil
}

func members(m []string) []string {
	if m == nil {
		return []string{}
	}
	return m
}

// OpenRecord returns the open record with key; false when there is none.
func (s *Store) OpenRecord(ctx context.Context, key string) (Record, bool, error) {
	r, err := scanRecord(s.pool.QueryRow(ctx, `SELECT `+recordColumns+` FROM pgkill_request WHERE dedup = $1 AND open`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("state store: request %s: %w", key, translate(err))
	}
	return r, true, nil
}

// Record reads record id and the store's clock now; ErrNotFound when there
// is none.
func (s *Store) Record(ctx context.Context, id int64) (Record, time.Time, error) {
	var now time.Time
	row := s.pool.QueryRow(ctx, `SELECT `+recordColumns+`, clock_timestamp() FROM pgkill_request WHERE id = $1`, id)
	var r Record
	var expires, deadline, decided *time.Time
	err := row.Scan(&r.ID, &r.Key, &r.State, &r.Open, &r.Version, &r.Created, &expires, &deadline, &decided, &r.Members, &r.Doc, &now)
	r.Expires, r.Deadline, r.Decided = deref(expires), deref(deadline), deref(decided)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, now, fmt.Errorf("request %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, now, fmt.Errorf("state store: request %d: %w", id, translate(err))
	}
	return r, now, nil
}

// UpdateRecord writes r's state, openness, times and document if and only
// if the record is still at r.Version (as read) and, when r.Before is set,
// the store's clock is still before it as the row is written: false,
// changing nothing, when somebody changed it since or the time has passed.
func (s *Store) UpdateRecord(ctx context.Context, r Record) (bool, error) {
	// clock_timestamp(), not now(): the time the row is written, which
	// is what a guard against a late write must compare.
	tag, err := s.pool.Exec(ctx, `
UPDATE pgkill_request SET state = $3, open = $4, doc = $5, expires_at = $6, deadline_at = $7, decided_at = $8,
       version = version + 1, updated_at = clock_timestamp()
WHERE id = $1 AND version = $2 AND ($9::timestamptz IS NULL OR clock_timestamp() < $9)`,
		r.ID, r.Version, r.State, r.Open, r.Doc, at(r.Expires), at(r.Deadline), at(r.Decided), at(r.Before))
	if err != nil {
		return false, fmt.Errorf("state store: request %d → %s: %w", r.ID, r.State, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// DueRecords returns, by the store's clock, the open records past their
// expiry and the records past their deadline, oldest first, with that
// clock's time.
func (s *Store) DueRecords(ctx context.Context) ([]Record, time.Time, error) {
	var now time.Time
	if err := s.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		return nil, now, fmt.Errorf("state store: %w", translate(err))
	}
	rs, err := s.records(ctx, `SELECT `+recordColumns+` FROM pgkill_request
WHERE (open AND expires_at < $1) OR deadline_at < $1 ORDER BY id`, now)
	return rs, now, err
}

// OpenRecords returns every open record, oldest first.
func (s *Store) OpenRecords(ctx context.Context) ([]Record, error) {
	return s.records(ctx, `SELECT `+recordColumns+` FROM pgkill_request WHERE open ORDER BY id`)
}

// RecordsWith returns the closed records that act on member, newest first.
func (s *Store) RecordsWith(ctx context.Context, member string) ([]Record, error) {
	return s.records(ctx, `SELECT `+recordColumns+` FROM pgkill_request WHERE members @> ARRAY[$1] AND NOT open ORDER BY id DESC`, member)
}

func (s *Store) records(ctx context.Context, sql string, args ...any) ([]Record, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("state store: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) { return scanRecord(row) })
	if err != nil {
		return nil, fmt.Errorf("state store: %w", translate(err))
	}
	return out, nil
}

// PruneRecords deletes the records decided before the store's clock minus
// age, and the sets made before it.
func (s *Store) PruneRecords(ctx context.Context, age time.Duration) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM pgkill_request WHERE NOT open AND coalesce(decided_at, updated_at) < clock_timestamp() - $1::bigint * interval '1 millisecond'`, ms(age)); err != nil {
		return fmt.Errorf("state store: prune: %w", translate(err))
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM pgkill_set WHERE created < clock_timestamp() - $1::bigint * interval '1 millisecond'`, ms(age)); err != nil {
		return fmt.Errorf("state store: prune: %w", translate(err))
	}
	return nil
}

// CountRecords counts the records whose key begins with prefix made in the
// last age, by the store's clock.
func (s *Store) CountRecords(ctx context.Context, prefix string, age time.Duration) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pgkill_request
WHERE starts_with(dedup, $1) AND created_at > clock_timestamp() - $2::bigint * interval '1 millisecond'`, prefix, ms(age)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("state store: count requests: %w", translate(err))
	}
	return n, nil
}

// KeyExists reports whether any record, open or closed, has key.
func (s *Store) KeyExists(ctx context.Context, key string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pgkill_request WHERE dedup = $1)`, key).Scan(&ok); err != nil {
		return false, fmt.Errorf("state store: request %s: %w", key, translate(err))
	}
	return ok, nil
}
