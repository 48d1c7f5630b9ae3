package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PasswordGroup is the role whose members must log in with their password
// (scram-sha-256) over TCP. Every other role is trusted, as before.
const PasswordGroup = "pgtest_password"

// hbaPassword goes first in the throwaway cluster's pg_hba.conf, so that it
// wins over initdb's trust lines for members of PasswordGroup only.
const hbaPassword = "host all +" + PasswordGroup + " 127.0.0.1/32 scram-sha-256\n" +
	"host all +" + PasswordGroup + " ::1/128 scram-sha-256\n"

// requirePasswords puts hbaPassword in front of the cluster's pg_hba.conf.
func requirePasswords(data string) error {
	p := filepath.Join(data, "pg_hba.conf")
	old, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return os.WriteFile(p, append([]byte(hbaPassword), old...), 0o600) // keeps the postgres owner
}

// PasswordRole creates (or updates) a login role that the server admits
// only with this password, and returns its DSN without the password: tests
// of rotation and refused logins need a server that checks passwords, which
// the shared cluster's trust authentication does not. SetPassword rotates
// it. On a server named by PGKILL_TEST_DATABASE_URL, its pg_hba.conf must
// begin with the lines of hbaPassword; the test fails, naming them, if a
// wrong password is admitted.
func PasswordRole(tb testing.TB, name, password string, grants ...string) string {
	tb.Helper()
	Exec(tb, fmt.Sprintf(`DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s LOGIN; END IF;
END $$`, quoteLit(PasswordGroup), quoteIdent(PasswordGroup), quoteLit(name), quoteIdent(name)))
	Exec(tb, fmt.Sprintf("GRANT %s TO %s", quoteIdent(PasswordGroup), quoteIdent(name)))
	for _, g := range grants {
		Exec(tb, fmt.Sprintf("GRANT %s TO %s", quoteIdent(g), quoteIdent(name)))
	}
	SetPassword(tb, name, password)
	dsn := DSNAs(tb, name)
	if err := tryLogin(dsn, password+"-wrong"); err == nil {
		tb.Fatalf("pgtest: the server admits role %s with a wrong password: its pg_hba.conf must begin with\n%s", name, hbaPassword)
	} else if !isAuthFailure(err) {
		tb.Fatalf("pgtest: checking password authentication: %v", err)
	}
	return dsn
}

// SetPassword changes a role's password (a rotation, as a secret store's
// rotation function does it).
func SetPassword(tb testing.TB, role, password string) {
	tb.Helper()
	// ALTER ROLE takes no parameters: the literal is quoted. Sessions
	// already open stay open, as on a real server.
	Exec(tb, fmt.Sprintf("ALTER ROLE %s PASSWORD %s", quoteIdent(role), quoteLit(password)))
}

// WithPassword returns dsn with the password set.
func WithPassword(tb testing.TB, dsn, password string) string {
	tb.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String()
}

func tryLogin(dsn, password string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	cfg.Password = password
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func isAuthFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
}
