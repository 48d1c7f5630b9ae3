package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PauseRow is one row of pgkill_pause: what stops the autopilot, in a scope
// the caller names.
type PauseRow struct {
	Scope, Reason, By string
	At                time.Time // the store's clock
}

// PutPause records a pause of scope, unless one is recorded already (the
// first one's reason and author stay): false then.
func (s *Store) PutPause(ctx context.Context, scope, reason, by string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO pgkill_pause (scope, reason, by) VALUES ($1, $2, $3) ON CONFLICT (scope) DO NOTHING`, scope, reason, by)
	if err != nil {
		return false, fmt.Errorf("state store: pause %s: %w", scope, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// DeletePause ends the pause of scope; false when there was none.
func (s *Store) DeletePause(ctx context.Context, scope string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM pgkill_pause WHERE scope = $1`, scope)
	if err != nil {
		return false, fmt.Errorf("state store: resume %s: %w", scope, translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// Pauses returns every pause, oldest first.
func (s *Store) Pauses(ctx context.Context) ([]PauseRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT scope, reason, by, at FROM pgkill_pause ORDER BY at, scope`)
	if err != nil {
		return nil, fmt.Errorf("state store: pauses: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (PauseRow, error) {
		var p PauseRow
		return p, row.Scan(&p.Scope, &p.Reason, &p.By, &p.At)
	})
	if err != nil {
		return nil, fmt.Errorf("state store: pauses: %w", translate(err))
	}
	return out, nil
}
