package pg_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// storeAuth stands in for a secret store: Login hands out the cached
// password, Refused re-reads the store.
type storeAuth struct {
	mu              sync.Mutex
	store, cached   string
	logins, refused int
}

func (a *storeAuth) Login(context.Context) (pg.Login, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logins++
	return pg.Login{Password: a.cached}, nil
}

func (a *storeAuth) Refused() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refused++
	a.cached = a.store
	return true
}

func (a *storeAuth) Advice() string  { return "check the test store" }
func (a *storeAuth) String() string  { return "test store" }
func (a *storeAuth) rotate(p string) { a.mu.Lock(); a.store = p; a.mu.Unlock() }
func (a *storeAuth) counts() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logins, a.refused
}

func TestAuthRotationRetriesOnce(t *testing.T) {
	dsn := pgtest.PasswordRole(t, "pgkill_rotate", "first-pass")
	auth := &storeAuth{store: "first-pass", cached: "first-pass"}
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "rot", DSN: dsn, Auth: auth}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	if err := tg.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}

	// The store rotates the password; the role's password changes; our
	// pooled session is ended, so the next operation needs a new login
	// and first tries the stale cached password.
	auth.rotate("second-pass")
	pgtest.SetPassword(t, "pgkill_rotate", "second-pass")
	pgtest.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pgkill_rotate'")

	if err := tg.Ping(ctx(t)); err != nil {
		t.Fatalf("ping after rotation: %v", err)
	}
	if logins, refused := auth.counts(); refused != 1 || logins != 3 {
		t.Errorf("logins %d, refused %d; want 3 logins (first, stale, re-read) and 1 refusal", logins, refused)
	}
	if mode := tg.AuthMode(); mode != "test store" {
		t.Errorf("AuthMode = %q", mode)
	}
}

func TestAuthRefusedAdvises(t *testing.T) {
	dsn := pgtest.PasswordRole(t, "pgkill_refused", "right-pass")
	auth := &storeAuth{store: "wrong-pass-1", cached: "wrong-pass-0"}
	tg, err := pg.NewTarget(pg.TargetSpec{Name: "ref", DSN: dsn, Auth: auth}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	err = tg.Ping(ctx(t))
	if !errors.Is(err, pg.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "check the test store") || strings.Contains(err.Error(), "wrong-pass") {
		t.Errorf("error %q: want the advice and no password", err)
	}
	if _, refused := auth.counts(); refused != 1 {
		t.Errorf("refused %d times, want 1: one re-read, one retry", refused)
	}
}

func TestAuthDSNPasswordAdvice(t *testing.T) {
	dsn := pgtest.PasswordRole(t, "pgkill_dsnpw", "right-pass")
	tg := newTarget(t, pgtest.WithPassword(t, dsn, "bad-pass"), pg.Options{})
	err := tg.Ping(ctx(t))
	if !errors.Is(err, pg.ErrAuth) || !strings.Contains(err.Error(), "check the user and password") || strings.Contains(err.Error(), "bad-pass") {
		t.Fatalf("err = %v, want ErrAuth with advice and no password", err)
	}
	if tg.AuthMode() != "password in the DSN" {
		t.Errorf("AuthMode = %q", tg.AuthMode())
	}
}

func TestUnresolvedDSNParameter(t *testing.T) {
	_, err := pg.NewTarget(pg.TargetSpec{Name: "x", DSN: "postgres://u@h:5432/db?pgkill_auth=iam"}, pg.Options{})
	if err == nil || !strings.Contains(err.Error(), "pgkill_auth") {
		t.Fatalf("err = %v, want a refusal naming pgkill_auth", err)
	}
}
