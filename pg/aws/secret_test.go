package aws_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/aws/fakeaws"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func loginJSON(user, password string) string {
	return fmt.Sprintf(`{"username":%q,"password":%q,"engine":"postgres"}`, user, password)
}

// Rotation: the secret changes in Secrets Manager and the role's password
// changes in PostgreSQL. The next operation that needs a new connection
// first tries the cached password, is refused, re-reads the secret once and
// succeeds: nothing fails for the user.
func TestSecretRotation(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "eu-west-1")
	const role = "pgkill_secret_rot"
	dsn := pgtest.PasswordRole(t, role, "before-rotation")
	arn := f.PutSecret("eu-west-1", "prod/pgkill", loginJSON(role, "before-rotation"))
	spec, err := a.Resolve(pg.TargetSpec{Name: "prod", DSN: dsn + "&pgkill_secret=" + url.QueryEscape(arn)})
	if err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, spec)
	if err := tg.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// A new connection within SecretTTL reuses the secret read.
	dropSessions(t, role)
	if err := tg.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := f.Count("GetSecretValue"); n != 1 {
		t.Fatalf("GetSecretValue %d times before the rotation, want 1 (cached)", n)
	}

	f.PutSecret("eu-west-1", "prod/pgkill", loginJSON(role, "after-rotation"))
	pgtest.SetPassword(t, role, "after-rotation")
	dropSessions(t, role)
	if _, err := tg.List(ctx(t), pg.Filter{}); err != nil {
		t.Fatalf("listing after the rotation: %v", err)
	}
	if n := f.Count("GetSecretValue"); n != 2 {
		t.Errorf("GetSecretValue %d times, want 2 (one re-read after the refusal)", n)
	}
	for _, c := range f.Calls() {
		if c.Region != "eu-west-1" || c.Service != "secretsmanager" {
			t.Errorf("call %+v: want secretsmanager in the ARN's region", c)
		}
	}
}

// A secret that names the server is used for host, port and dbname when the
// DSN names none.
func TestSecretWithHost(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "eu-west-1")
	const role = "pgkill_secret_host"
	dsn := pgtest.PasswordRole(t, role, "hosted-pass")
	u, _ := url.Parse(dsn)
	f.PutSecret("eu-west-1", "hosted", fmt.Sprintf(`{"username":%q,"password":"hosted-pass","host":%q,"port":%s,"dbname":"postgres"}`,
		role, u.Hostname(), u.Port()))
	spec, err := a.Resolve(pg.TargetSpec{Name: "hosted", DSN: "postgres:///?sslmode=disable&pgkill_secret=hosted&pgkill_region=eu-west-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := newTarget(t, spec).Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// What goes wrong with a secret is said without its value.
func TestSecretFailures(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "eu-west-1")
	dsn := pgtest.PasswordRole(t, "pgkill_secret_bad", "the-right-one")
	f.PutSecret("eu-west-1", "notjson", `{"username":"pgkill_secret_bad","password":"leaky-value-1"`)
	f.PutSecret("eu-west-1", "stale", loginJSON("pgkill_secret_bad", "leaky-value-2"))
	tests := []struct{ secret, want string }{
		{"missing", "ResourceNotFoundException"},
		{"missing", "the database was not asked"},
		{"notjson", "is not a JSON object with username and password"},
		{"stale", "the secret was read again and its login is still refused"},
	}
	for _, tc := range tests {
		t.Run(tc.secret, func(t *testing.T) {
			spec, err := a.Resolve(pg.TargetSpec{Name: "bad", DSN: dsn + "&pgkill_secret=" + tc.secret})
			if err != nil {
				t.Fatal(err)
			}
			err = newTarget(t, spec).Ping(ctx(t))
			if !errors.Is(err, pg.ErrAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrAuth with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "leaky-value") {
				t.Errorf("secret value in error: %v", err)
			}
		})
	}
	if n := f.Count("GetSecretValue"); n != 5 {
		t.Errorf("GetSecretValue %d times, want 5: once per try for missing (twice) and notjson (a failed read is not retried), twice for stale (one re-read after the refusal)", n)
	}
}

// Past SecretTTL, a new connection reads the secret again.
func TestSecretTTL(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "eu-west-1")
	a.SecretTTL = 0
	const role = "pgkill_secret_ttl"
	dsn := pgtest.PasswordRole(t, role, "ttl-pass")
	f.PutSecret("eu-west-1", "ttl", loginJSON(role, "ttl-pass"))
	spec, err := a.Resolve(pg.TargetSpec{Name: "ttl", DSN: dsn + "&pgkill_secret=ttl"})
	if err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, spec)
	for range 2 {
		if err := tg.Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
		dropSessions(t, role)
	}
	if n := f.Count("GetSecretValue"); n != 2 {
		t.Errorf("GetSecretValue %d times for 2 connections with no caching, want 2", n)
	}
}
