package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// roleSettingSQL reads a setting as a role's sessions in a database get it
// from ALTER ROLE/DATABASE … SET: for the role in that database first, then
// for the role, then for the database. No row: none of those sets it.
const roleSettingSQL = `
WITH r AS (SELECT oid FROM pg_roles WHERE rolname = $1), d AS (SELECT oid FROM pg_database WHERE datname = $2)
SELECT substr(c, length($3) + 2),
       CASE WHEN s.setrole <> 0 AND s.setdatabase <> 0 THEN 'set for the role in this database'
            WHEN s.setrole <> 0 THEN 'set for the role' ELSE 'set for the database' END
FROM pg_db_role_setting s, unnest(s.setconfig) AS c
WHERE c LIKE $3 || '=%'
  AND ((s.setrole = (SELECT oid FROM r) AND s.setdatabase IN ((SELECT oid FROM d), 0))
       OR (s.setrole = 0 AND s.setdatabase = (SELECT oid FROM d)))
ORDER BY s.setrole = 0, s.setdatabase = 0
LIMIT 1`

// RoleSetting says what setting name (statement_timeout or
// idle_in_transaction_session_timeout) is for role's sessions in database
// on target, and where that comes from; without a role or database
// setting, the server's, as a plain session sees it. It reads shared
// catalogs: not for use in a lock pile-up.
func (f *Fleet) RoleSetting(ctx context.Context, target, role, database, name string) (value, source string, err error) {
	t, err := f.Target(target)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := t.deadline(ctx)
	defer cancel()
	type setting struct{ value, source string }
	got, err := call(ctx, t.locks, "a role's setting", reads, func(ctx context.Context, c *pgx.Conn) (setting, error) {
		var s setting
		err := c.QueryRow(ctx, roleSettingSQL, role, database, name).Scan(&s.value, &s.source)
		if errors.Is(err, pgx.ErrNoRows) {
			return s, nil
		}
		return s, err
	})
	if err != nil {
		return "", "", fmt.Errorf("%s's %s on %s: %w", role, name, target, translate(err))
	}
	if got.source != "" {
		return got.value, got.source, nil
	}
	v, err := t.serverSetting(ctx, name)
	if err != nil {
		return "", "", fmt.Errorf("%s on %s: %w", name, target, err)
	}
	return v, "the server's setting", nil
}

// serverSetting reads name as the server sets it for every role, from a
// plain connection (pgkill's own sessions run with its own timeouts). When
// pgkill's role or database sets it, that is not what other roles get, and
// it says so instead of a value.
func (t *Target) serverSetting(ctx context.Context, name string) (string, error) {
	cfg := t.connCfg.Copy()
	delete(cfg.RuntimeParams, name)
	conn, err := t.connect(ctx, cfg)
	if err != nil {
		return "", translate(err)
	}
	defer conn.Close(context.Background())
	var v, source string
	if err := conn.QueryRow(ctx, `SELECT current_setting($1), source FROM pg_settings WHERE name = $1`, name).Scan(&v, &source); err != nil {
		return "", translate(err)
	}
	switch source {
	case "user", "database", "database user":
		return "", fmt.Errorf("pgkill's own role or database sets it (%s), so the server's value is not known", source)
	}
	return v, nil
}

// QuoteIdent quotes an SQL identifier, always: a role may be named like
// a keyword (user, select), and a quoted name is right whatever it is.
func QuoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }
