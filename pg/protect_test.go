package pg_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// A statement that makes its session protected while it runs
// (set_config('application_name', …) keeps its query_start) is not
// signalled: the signalling statement checks the rules itself. Each
// statement waits on advisory locks the test holds, so each step happens
// exactly when the test lets it; the other member of the set, which took
// a name no rule protects, is signalled.
func TestSignalSparesSessionProtectedSinceListed(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	rules, err := match.Parse("user=protect_l?ter app=pg_dump*", "")
	if err != nil {
		t.Fatal(err)
	}
	app := pgtest.Role(t, "protect_later")
	holder := pgtest.NewSession(t, dsn, "protect_later_holder")
	holder.Exec(t, "SELECT pg_advisory_lock(7101), pg_advisory_lock(7102)")
	tg := newTarget(t, dsn, pg.Options{Protect: rules})
	var ss []*pgtest.Session
	var listed []pg.Backend
	for _, name := range []string{"pg_dump_nightly", "report"} {
		s := pgtest.NewSession(t, app, "protect_later")
		s.Run(fmt.Sprintf(`DO $$ BEGIN
  PERFORM pg_advisory_lock_shared(7101);
  PERFORM set_config('application_name', '%s', false);
  PERFORM pg_advisory_lock_shared(7102);
END $$`, name))
		b := waitBackend(t, tg, pg.Filter{PID: s.PID}, s.PID, func(b pg.Backend) bool {
			return b.Application == "protect_later" && len(b.BlockedBy) == 1
		})
		if !b.Signallable() {
			t.Fatalf("listed as %q before it changed its name", b.Protected)
		}
		ss, listed = append(ss, s), append(listed, b)
	}
	holder.Exec(t, "SELECT pg_advisory_unlock(7101)")
	for i, name := range []string{"pg_dump_nightly", "report"} {
		waitBackend(t, tg, pg.Filter{PID: ss[i].PID}, ss[i].PID, func(x pg.Backend) bool {
			return x.Application == name && x.WaitEventType == "Lock" && x.QueryStart.Equal(listed[i].QueryStart)
		})
	}
	outs, err := tg.SignalSet(ctx(t), pg.Cancel, []pg.Identity{listed[0].Identity, listed[1].Identity})
	if err != nil {
		t.Fatal(err)
	}
	if o := outs[0]; o.Result != pg.Protected || !strings.Contains(o.Message, `user=protect_l?ter app=pg_dump* (user "protect_later", application_name "pg_dump_nightly")`) {
		t.Errorf("the protected one: %+v; want protected, nothing signalled", o)
	}
	if outs[1].Result != pg.Sent {
		t.Errorf("the other: %+v; want sent", outs[1])
	}
	if !ss[0].Running() {
		t.Errorf("the protected session's statement ended: %v", ss[0].Result(t))
	}
	if code := pgtest.SQLState(ss[1].Result(t)); code != "57014" {
		t.Errorf("the other's statement: SQLSTATE %q, want 57014 (cancelled)", code)
	}
	out, err := tg.Signal(ctx(t), pg.Terminate, listed[0].Identity)
	if err != nil || out.Result != pg.Protected {
		t.Errorf("terminate = %+v, %v; want protected", out, err)
	}
	if !ss[0].Running() {
		t.Errorf("the protected session's statement ended: %v", ss[0].Result(t))
	}
}
