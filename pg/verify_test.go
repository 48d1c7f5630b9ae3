package pg_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// A cancel inside a transaction leaves it open and aborted. Verify counts
// the locks it still holds, and only a transaction that holds some is said
// to keep them.
func TestVerifyCancelInTransaction(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	pgtest.Exec(t, "CREATE TABLE IF NOT EXISTS aborted_tx (id int)")
	tests := []struct {
		name, setup string
		locks       bool
	}{
		{"lock and savepoint", "BEGIN; LOCK TABLE aborted_tx IN ACCESS EXCLUSIVE MODE; SAVEPOINT sp", true},
		{"savepoint, no lock", "BEGIN; SAVEPOINT sp", false},
		{"plain transaction", "BEGIN", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := "aborted_" + strings.ReplaceAll(tc.name, " ", "_")
			s := pgtest.NewSession(t, dsn, app)
			s.Exec(t, tc.setup)
			s.Run("SELECT pg_sleep(600)")
			tg := newTarget(t, dsn, pg.Options{})
			b := waitBackend(t, tg, pg.Filter{Application: app}, s.PID, func(b pg.Backend) bool { return b.State == pg.StateActive })
			out, err := tg.Signal(ctx(t), pg.Cancel, b.Identity)
			if err != nil || out.Result != pg.Sent || out.At.IsZero() {
				t.Fatalf("cancel = %+v, %v", out, err)
			}
			if code := pgtest.SQLState(s.Result(t)); code != "57014" {
				t.Fatalf("victim got %q", code)
			}
			v, err := tg.Verify(ctx(t), out, 5*time.Second)
			if err != nil || !v.Ended || v.State != pg.StateIdleInTxAborted || v.MaybeNext {
				t.Fatalf("verify = %+v, %v", v, err)
			}
			why := pg.WhyStillRunning(pg.Cancel, v)
			if tc.locks {
				if v.Locks < 1 || !v.AbortedTxOpen || !strings.Contains(why, "keeps its") {
					t.Errorf("locks %d, aborted open %v, why %q; want locks held", v.Locks, v.AbortedTxOpen, why)
				}
				return
			}
			if v.Locks != 0 || v.AbortedTxOpen || strings.Contains(why, "keeps") {
				t.Errorf("locks %d, aborted open %v, why %q; want no lock claimed", v.Locks, v.AbortedTxOpen, why)
			}
		})
	}
}
