package main

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/pg/aws/fakeaws"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// awsEnv points the binary's AWS SDK at the fake through the standard
// variables (no shared config, no instance metadata).
func awsEnv(f *fakeaws.Server) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + fakeaws.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + fakeaws.SecretKey,
		"AWS_REGION=eu-west-1",
		"AWS_ENDPOINT_URL=" + f.URL,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
	}
}

// The binary discovers an instance (IAM login; the throwaway server trusts
// the role) and reads a static target's login from a secret (the role needs
// its password), and lists both.
func TestCLIAWS(t *testing.T) {
	f := fakeaws.New(t)
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	port := 0
	fmt.Sscan(u.Port(), &port)
	pgtest.Role(t, "pgkill_e2e_iam", "pg_read_all_stats", "pg_signal_backend")
	pgtest.PasswordRole(t, "pgkill_e2e_secret", "from-the-secret", "pg_read_all_stats", "pg_signal_backend")
	f.AddInstance("eu-west-1", fakeaws.Instance{ID: "ledger", Engine: "postgres", Address: u.Hostname(), Port: port, Tags: map[string]string{"team": "payments"}})
	f.AddInstance("eu-west-1", fakeaws.Instance{ID: "other-team", Engine: "postgres", Address: "10.9.9.9", Port: 5432})
	arn := f.PutSecret("eu-west-1", "pgkill/e2e", `{"username":"pgkill_e2e_secret","password":"from-the-secret"}`)
	s := sleeper(t, "cli_aws")

	env := append(awsEnv(f),
		"PGKILL_RDS_DISCOVER=tag:team=payments auth=iam user=pgkill_e2e_iam sslmode=disable",
		"PGKILL_TARGETS=rotated=postgres://"+u.Host+"/postgres?sslmode=disable&pgkill_secret="+url.QueryEscape(arn),
	)
	r := pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_aws")
	if r.code != 0 || strings.Count(r.stdout, fmt.Sprint(s.PID)) != 2 || !strings.Contains(r.stdout, "ledger") ||
		!strings.Contains(r.stdout, "rotated") || strings.Contains(r.stdout, "other-team") {
		t.Errorf("list over a discovered and a secret target: %+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "from-the-secret") || strings.Contains(r.stdout+r.stderr, "X-Amz-Signature") {
		t.Errorf("a secret or token printed: %+v", r)
	}

	// Discovery alone: no "default" target from the libpq variables.
	env = append(awsEnv(f), "PGKILL_RDS_DISCOVER=tag:team=payments auth=iam user=pgkill_e2e_iam sslmode=disable")
	r = pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_aws")
	if r.code != 0 || strings.Count(r.stdout, fmt.Sprint(s.PID)) != 1 || strings.Contains(r.stdout+r.stderr, "default") {
		t.Errorf("list with discovery alone: %+v", r)
	}

	// A static target named like a discovered instance stops the start.
	env = append(awsEnv(f), "PGKILL_RDS_DISCOVER=auth=iam user=pgkill_e2e_iam", "PGKILL_TARGETS=ledger="+pgtest.DSN(t))
	if r := pgkill(t, env, "", "list"); r.code == 0 || !strings.Contains(r.stderr, `"ledger" is used twice`) {
		t.Errorf("name clash: %+v", r)
	}
	// A malformed setting is refused with the reason.
	env = append(awsEnv(f), "PGKILL_RDS_DISCOVER=auth=iam", "DATABASE_URL="+pgtest.DSN(t))
	if r := pgkill(t, env, "", "list"); r.code == 0 || !strings.Contains(r.stderr, "PGKILL_RDS_DISCOVER: auth=iam needs user=NAME") {
		t.Errorf("bad setting: %+v", r)
	}
}
