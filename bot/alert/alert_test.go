package alert

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// rolesDB is a fleet of one target, "t", whose role changes.
type rolesDB struct {
	mu   sync.Mutex
	role string
}

func (f *rolesDB) Names() []string { return []string{"t"} }
func (f *rolesDB) Specs() []pg.TargetSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []pg.TargetSpec{{Name: "t", Role: f.role, Origin: "Aurora cluster c in eu-west-1"}}
}
func (f *rolesDB) List(context.Context, []string, pg.Filter) []pg.Listing { return nil }

// An alert names its target's role as the fleet has it when the message
// is built: an edit after a failover shows the new one.
func TestAlertRoleFollowsFailover(t *testing.T) {
	db := &rolesDB{}
	w := New(context.Background(), Config{}, Deps{DB: db, Out: nopOut{}, Requests: nopRequests{}, Sets: nopSets{}, Metrics: metrics.New(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	a := blocks.Alert{Backend: pg.Backend{Identity: pg.Identity{Target: "t", PID: 7}, State: pg.StateActive}, Since: time.Unix(0, 0), Now: time.Unix(60, 0)}
	for _, role := range []string{"writer", "reader", ""} {
		db.mu.Lock()
		db.role = role
		db.mu.Unlock()
		raw, _ := json.Marshal(w.message(a).Blocks)
		got := string(raw)
		want := "on *t* (" + role + ")"
		if role == "" {
			want = `on *t*\n`
		}
		if !strings.Contains(got, want) {
			t.Errorf("role %q: alert lacks %q: %s", role, want, got)
		}
	}
}
