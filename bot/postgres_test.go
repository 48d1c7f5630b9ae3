package bot

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// movingFleet is a fakePG whose one target "t" can change role or leave.
type movingFleet struct {
	*fakePG
	mu   sync.Mutex
	role string
	gone bool
}

func (f *movingFleet) set(role string, gone bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.role, f.gone = role, gone
}

func (f *movingFleet) Names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return nil
	}
	return []string{"t"}
}

func (f *movingFleet) Specs() []pg.TargetSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return nil
	}
	return []pg.TargetSpec{{Name: "t", Role: f.role, Origin: "Aurora cluster c in eu-west-1"}}
}

func newMovingBot(t *testing.T) (*Bot, *movingFleet) {
	t.Helper()
	db := &movingFleet{fakePG: newFakePG(), role: "writer"}
	return New(context.Background(), Config{}, db, &nopSlack{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil))), db
}

// An alert names its target's role as the fleet has it when the message
// is built: an edit after a failover shows the new one.
func TestAlertRoleFollowsFailover(t *testing.T) {
	b, db := newMovingBot(t)
	a := blocks.Alert{Backend: pg.Backend{Identity: pg.Identity{Target: "t", PID: 7}, State: pg.StateActive}, Since: time.Unix(0, 0), Now: time.Unix(60, 0)}
	for _, role := range []string{"writer", "reader", ""} {
		db.set(role, false)
		raw, _ := json.Marshal(b.alertMessage(a).Blocks)
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

// A target that left the fleet is never signalled, and says so.
func TestLeftFleet(t *testing.T) {
	b, db := newMovingBot(t)
	db.set("writer", true)
	ctx := context.Background()
	id := pg.Identity{Target: "t", PID: 7}
	if _, err := b.db.Signal(ctx, pg.Cancel, id); !errors.Is(err, errLeftFleet) ||
		err.Error() != "target t left the fleet (deleted or no longer discovered): nothing was signalled" {
		t.Errorf("Signal: %v", err)
	}
	if db.signalled() != 0 {
		t.Error("a target that left was signalled")
	}
	if _, err := b.db.Backend(ctx, "t", 7); !errors.Is(err, errLeftFleet) {
		t.Errorf("Backend: %v", err)
	}
	if err := b.db.Ping(ctx, "t"); !errors.Is(err, errLeftFleet) {
		t.Errorf("Ping: %v", err)
	}
	db.set("writer", false)
	if _, err := b.db.Signal(ctx, pg.Cancel, id); err != nil || db.signalled() != 1 {
		t.Errorf("Signal on a target in the fleet: %v, %d signals", err, db.signalled())
	}
}
