package config_test

import (
	"context"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// A space after a comma once made " review_repl" a protected user that
// matched nobody: the session was offered and could be terminated.
func TestProtectedUsersWithSpacesProtect(t *testing.T) {
	t.Setenv("PGKILL_PROTECTED_USERS", "rdsadmin, prot_space_user")
	var cfg config.Config
	if err := envconfig.Process("", &cfg); err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.PGOptions()
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Role(t, "prot_space_user")
	s := pgtest.NewSession(t, pgtest.DSNAs(t, "prot_space_user"), "prot_space_app")
	s.Run("SELECT pg_sleep(60)")
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "t", DSN: pgtest.DSN(t)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	b := waitListed(t, tg, s.PID)
	if b.Signallable() {
		t.Fatalf("a session of protected user prot_space_user is offered: %+v", b)
	}
}

// waitListed polls tg until pid is listed (whatever its duration).
func waitListed(t *testing.T, tg *pg.Target, pid int32) pg.Backend {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := tg.Backend(context.Background(), pid)
		if err == nil && b.State == pg.StateActive {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never listed active: %+v, %v", pid, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
