package pg_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// RoleSetting reads what a role's sessions in a database get: the role in
// that database first, then the role, then the database, then the
// server's — never pgkill's own session timeouts.
func TestRoleSetting(t *testing.T) {
	pgtest.Role(t, "settings_app")
	pgtest.Role(t, "settings_other")
	dsn := pgtest.Database(t, "settings_shop")
	pgtest.Exec(t, `ALTER ROLE settings_app RESET ALL`)
	pgtest.Exec(t, `ALTER ROLE settings_app IN DATABASE settings_shop RESET ALL`)
	pgtest.Exec(t, `ALTER DATABASE settings_shop RESET ALL`)
	// pgkill's own sessions run with a statement_timeout of their own: it
	// must not show through.
	f, err := pg.NewFleet([]pg.TargetSpec{{Name: "a", DSN: dsn}}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	const name = "idle_in_transaction_session_timeout"
	read := func(role string) (string, string) {
		t.Helper()
		v, src, err := f.RoleSetting(ctx(t), "a", role, "settings_shop", name)
		if err != nil {
			t.Fatal(err)
		}
		return v, src
	}
	if v, src := read("settings_app"); v != "0" || src != "the server's setting" {
		t.Errorf("nothing set: %q (%s)", v, src)
	}
	if v, _, err := f.RoleSetting(ctx(t), "a", "settings_app", "settings_shop", "statement_timeout"); v != "0" || err != nil {
		t.Errorf("statement_timeout, set only in pgkill's own sessions: %q %v", v, err)
	}
	for _, c := range []struct{ sql, role, want, src string }{
		{`ALTER DATABASE settings_shop SET ` + name + ` = '7min'`, "settings_app", "7min", "set for the database"},
		{`ALTER ROLE settings_app SET ` + name + ` = '8min'`, "settings_app", "8min", "set for the role"},
		{`ALTER ROLE settings_app IN DATABASE settings_shop SET ` + name + ` = '9min'`, "settings_app", "9min", "set for the role in this database"},
		{`SELECT 1`, "settings_other", "7min", "set for the database"},
	} {
		pgtest.Exec(t, c.sql)
		if v, src := read(c.role); v != c.want || src != c.src {
			t.Errorf("after %s: %s gets %q (%s), want %q (%s)", c.sql, c.role, v, src, c.want, c.src)
		}
	}
	if _, _, err := f.RoleSetting(ctx(t), "nowhere", "settings_app", "settings_shop", name); err == nil {
		t.Error("an unknown target answered")
	}
}

func TestQuoteIdent(t *testing.T) {
	for in, want := range map[string]string{"app": `"app"`, "user": `"user"`, `we"ird`: `"we""ird"`} {
		if got := pg.QuoteIdent(in); got != want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", in, got, want)
		}
	}
}

// Pauses: one per scope, the first one's author kept; kept across
// processes (another store on the same database sees them).
func TestStorePauses(t *testing.T) {
	ss := openStores(t, 2)
	scope := fmt.Sprintf("target:pause-%d", time.Now().UnixNano())
	if ok, err := ss[0].PutPause(ctx(t), scope, "paused by <@U1>", "U1"); !ok || err != nil {
		t.Fatalf("first pause: %v %v", ok, err)
	}
	if ok, err := ss[1].PutPause(ctx(t), scope, "paused by <@U2>", "U2"); ok || err != nil {
		t.Fatalf("second pause of the same scope: %v %v", ok, err)
	}
	ps, err := ss[1].Pauses(ctx(t))
	found := false
	for _, p := range ps {
		if p.Scope == scope {
			found = p.By == "U1" && !p.At.IsZero()
		}
	}
	if err != nil || !found {
		t.Fatalf("pauses seen by another process: %+v %v", ps, err)
	}
	if ok, err := ss[1].DeletePause(ctx(t), scope); !ok || err != nil {
		t.Fatalf("resume: %v %v", ok, err)
	}
	if ok, _ := ss[0].DeletePause(ctx(t), scope); ok {
		t.Error("resumed twice")
	}
}

// CountRecords counts a key prefix's records made within a window by the
// store's clock, open or closed; KeyExists finds a closed one too.
func TestStoreCountAndKeyExists(t *testing.T) {
	ss := openStores(t, 1)
	prefix := fmt.Sprintf("auto|count|%d|", time.Now().UnixNano())
	for i := range 3 {
		r, _, err := ss[0].AddRecord(ctx(t), pg.Record{Key: fmt.Sprintf("%s%d", prefix, i), State: "pending", Doc: []byte(`{}`)}, time.Hour, 0)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			r.State, r.Open = "done", false
			if ok, err := ss[0].UpdateRecord(ctx(t), r); !ok || err != nil {
				t.Fatal(ok, err)
			}
		}
	}
	if n, err := ss[0].CountRecords(ctx(t), prefix, time.Hour); n != 3 || err != nil {
		t.Errorf("count = %d %v, want 3", n, err)
	}
	time.Sleep(20 * time.Millisecond)
	if n, err := ss[0].CountRecords(ctx(t), prefix, 10*time.Millisecond); n != 0 || err != nil {
		t.Errorf("count within 10ms, 20ms later = %d %v, want 0", n, err)
	}
	if ok, err := ss[0].KeyExists(ctx(t), prefix+"0"); !ok || err != nil {
		t.Errorf("closed record's key: %v %v", ok, err)
	}
	if ok, _ := ss[0].KeyExists(ctx(t), strings.TrimSuffix(prefix, "|")); ok {
		t.Error("a prefix is not a key")
	}
}
