package aws_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/aws/fakeaws"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestResolve(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "")
	tests := []struct {
		name, dsn string
		wantDSN   string // "" for unchanged
		wantAuth  string
		err       string
	}{
		{name: "plain", dsn: "postgres://u:pw@h:5432/db"},
		{
			name: "iam", dsn: "postgres://pgkill@db1.abc123.eu-west-1.rds.amazonaws.com/postgres?pgkill_auth=iam",
			wantDSN:  "postgres://pgkill@db1.abc123.eu-west-1.rds.amazonaws.com/postgres?sslmode=require",
			wantAuth: "IAM token for user pgkill at db1.abc123.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)",
		},
		{
			name: "iam own sslmode and region", dsn: "postgres://pgkill@10.1.2.3:6432/postgres?sslmode=verify-full&pgkill_auth=iam&pgkill_region=us-east-2",
			wantDSN:  "postgres://pgkill@10.1.2.3:6432/postgres?sslmode=verify-full",
			wantAuth: "IAM token for user pgkill at 10.1.2.3:6432 (us-east-2)",
		},
		{
			name: "iam keyword form", dsn: "host=db1.abc.us-east-1.rds.amazonaws.com user=pgkill pgkill_auth=iam dbname=postgres",
			wantDSN:  "host=db1.abc.us-east-1.rds.amazonaws.com user=pgkill dbname=postgres sslmode=require",
			wantAuth: "IAM token for user pgkill at db1.abc.us-east-1.rds.amazonaws.com:5432 (us-east-1)",
		},
		{
			name: "secret arn", dsn: "postgres://db1.abc.eu-west-1.rds.amazonaws.com:5432/postgres?pgkill_secret=arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/pgkill-AbCdEf",
			wantDSN:  "postgres://db1.abc.eu-west-1.rds.amazonaws.com:5432/postgres",
			wantAuth: "Secrets Manager secret arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/pgkill-AbCdEf",
		},
		{name: "iam without user", dsn: "postgres://db1.abc.eu-west-1.rds.amazonaws.com/postgres?pgkill_auth=iam", err: "needs the database user"},
		{name: "iam on a socket", dsn: "postgres://pgkill@/postgres?host=/tmp&pgkill_auth=iam&pgkill_region=eu-west-1", err: "needs the instance's host name"},
		{name: "iam without region", dsn: "postgres://pgkill@10.0.0.1:5432/postgres?pgkill_auth=iam", err: "no AWS region"},
		{name: "both", dsn: "postgres://u@h.eu-west-1.rds.amazonaws.com/db?pgkill_auth=iam&pgkill_secret=x", err: "choose one"},
		{name: "unknown auth", dsn: "postgres://u@h/db?pgkill_auth=kerberos", err: "the only value is iam"},
		{name: "unknown parameter", dsn: "postgres://u:sekrit@h/db?pgkill_secrets=x", err: "unknown DSN parameter pgkill_secrets"},
		{name: "region alone", dsn: "postgres://u@h/db?pgkill_region=eu-west-1", err: "pgkill_region alone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := a.Resolve(pg.TargetSpec{Name: "prod", DSN: tc.dsn})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "sekrit") {
					t.Fatalf("err = %v, want %q (and no password)", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.wantDSN
			if want == "" {
				want = tc.dsn
			}
			if got.DSN != want {
				t.Errorf("DSN = %q, want %q", got.DSN, want)
			}
			var auth string
			if got.Auth != nil {
				auth = got.Auth.String()
			}
			if auth != tc.wantAuth {
				t.Errorf("auth = %q, want %q", auth, tc.wantAuth)
			}
		})
	}
	if n := len(f.Calls()); n != 0 {
		t.Errorf("Resolve called AWS %d times; it must not", n)
	}
}

// checkToken verifies an IAM token with the fake's own SigV4 code: a
// presigned GET of host:port for action connect as user, signed with the
// test credentials for service rds-db in region, at a time within
// [from, to] (BuildAuthToken reads the clock itself: the signature is
// recomputed at the X-Amz-Date it carries).
func checkToken(t *testing.T, token, hostPort, user, region string, from, to time.Time) {
	t.Helper()
	if !strings.HasPrefix(token, hostPort+"?") {
		t.Fatalf("token %q is not for %s", token, hostPort)
	}
	scope, q, err := fakeaws.VerifyPresigned(token, fakeaws.EmptyPayloadHash, func(k string) (string, bool) {
		return fakeaws.SecretKey, k == fakeaws.AccessKey
	})
	if err != nil {
		t.Fatalf("token signature: %v", err)
	}
	want := fakeaws.Scope{AccessKey: fakeaws.AccessKey, Date: scope.Date, Region: region, Service: "rds-db"}
	if scope != want {
		t.Errorf("scope = %+v, want %+v", scope, want)
	}
	if q.Get("Action") != "connect" || q.Get("DBUser") != user || q.Get("X-Amz-Expires") != "900" || q.Get("X-Amz-SignedHeaders") != "host" {
		t.Errorf("token query %v", q)
	}
	at, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil || at.Before(from.Truncate(time.Second)) || at.After(to) {
		t.Errorf("signed at %v (%v), want within [%v, %v]", at, err, from, to)
	}
}

func TestIAMToken(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "us-east-1")
	spec, err := a.Resolve(pg.TargetSpec{Name: "prod", DSN: "postgres://pgkill@db1.abc123.eu-west-1.rds.amazonaws.com:5432/postgres?pgkill_auth=iam"})
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now().UTC()
	l, err := spec.Auth.Login(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, l.Password, "db1.abc123.eu-west-1.rds.amazonaws.com:5432", "pgkill", "eu-west-1", from, time.Now().UTC())
	if l.User != "pgkill" {
		t.Errorf("user %q", l.User)
	}
	// A token made with other credentials does not pass: the check can fail.
	bad := strings.Replace(l.Password, "X-Amz-Signature=", "X-Amz-Signature=0", 1)
	if _, _, err := fakeaws.VerifyPresigned(bad, fakeaws.EmptyPayloadHash, func(string) (string, bool) { return fakeaws.SecretKey, true }); err == nil {
		t.Error("a tampered token verified")
	}
}

// Every new connection gets its own token, minted at connection time: a
// pooled connection ended by the server is replaced with a fresh login.
func TestIAMTokenPerConnection(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "eu-west-1")
	pgtest.Role(t, "pgkill_iam", "pg_read_all_stats")
	u, err := url.Parse(pgtest.DSNAs(t, "pgkill_iam")) // trust auth: the token is sent only if asked for
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pgkill_auth", "iam")
	u.RawQuery = q.Encode()
	spec, err := a.Resolve(pg.TargetSpec{Name: "iam", DSN: u.String()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(spec.DSN, "sslmode=disable") {
		t.Fatalf("the DSN's own sslmode was overridden: %s", spec.DSN)
	}
	rec := &recorder{Auth: spec.Auth}
	spec.Auth = rec
	tg := newTarget(t, spec)
	from := time.Now().UTC()
	for i := range 3 {
		if err := tg.Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			dropSessions(t, "pgkill_iam")
		}
	}
	if err := tg.Ping(ctx(t)); err != nil { // a pooled connection: no new login
		t.Fatal(err)
	}
	logins := rec.all()
	if len(logins) != 3 {
		t.Fatalf("%d logins for 3 connections", len(logins))
	}
	for _, l := range logins {
		checkToken(t, l.Password, u.Host, "pgkill_iam", "eu-west-1", from, time.Now().UTC())
	}
	if n := len(f.Calls()); n != 0 {
		t.Errorf("minting a token called AWS %d times; it is computed locally", n)
	}
}

// A refused token is reported with what to check, and not retried (each
// connection already had a fresh one).
func TestIAMRefused(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "eu-west-1")
	dsn := pgtest.PasswordRole(t, "pgkill_iam_refused", "not-a-token")
	spec, err := a.Resolve(pg.TargetSpec{Name: "iam", DSN: dsn + "&pgkill_auth=iam"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Auth: spec.Auth}
	spec.Auth = rec
	err = newTarget(t, spec).Ping(ctx(t))
	if !errors.Is(err, pg.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	for _, want := range []string{"rds-db:connect", "GRANT rds_iam TO pgkill_iam_refused", "SQLSTATE 28P01"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	logins := rec.all()
	if len(logins) != 1 {
		t.Errorf("%d logins, want 1 (no retry for IAM)", len(logins))
	}
	for _, l := range logins {
		if strings.Contains(err.Error(), l.Password) || strings.Contains(err.Error(), "X-Amz-Signature") {
			t.Errorf("token in error: %v", err)
		}
	}
}

// pgx sees no pgkill_ parameter: the server would refuse it as a setting.
func TestResolvedDSNHasNoPgkillParameter(t *testing.T) {
	f := fakeaws.New(t)
	a := newAWS(t, f, "eu-west-1")
	spec, err := a.Resolve(pg.TargetSpec{Name: "x", DSN: pgtest.DSN(t) + "&pgkill_auth=iam"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(spec.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.RuntimeParams) != "map[]" {
		t.Errorf("runtime params %v", cfg.RuntimeParams)
	}
}
