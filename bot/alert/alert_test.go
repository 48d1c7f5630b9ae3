package alert

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/request"
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

// oneQuery is a fleet of one target, "t", running one runaway query until
// gone is set.
type oneQuery struct {
	mu   sync.Mutex
	b    pg.Backend
	gone bool
}

func (f *oneQuery) Names() []string        { return []string{"t"} }
func (f *oneQuery) Specs() []pg.TargetSpec { return []pg.TargetSpec{{Name: "t"}} }
func (f *oneQuery) List(context.Context, []string, pg.Filter) []pg.Listing {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := pg.Listing{Target: "t"}
	if !f.gone {
		l.Backends = []pg.Backend{f.b}
	}
	return []pg.Listing{l}
}

// flakyRequests fails every read while down; else one approved request,
// r, ended the query.
type flakyRequests struct {
	mu   sync.Mutex
	down bool
	r    request.Request
}

func (f *flakyRequests) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errors.New("state store: connection reset by peer")
	}
	return nil
}

func (f *flakyRequests) EndedBy(context.Context, pg.Identity) (request.Request, bool, error) {
	if err := f.err(); err != nil {
		return request.Request{}, false, err
	}
	return f.r, true, nil
}

func (f *flakyRequests) InFlight(context.Context, pg.Identity) (bool, error) { return false, f.err() }

// keptOut keeps what is put, each post answered at once.
type keptOut struct {
	mu    sync.Mutex
	items []outbox.Item
}

func (o *keptOut) Put(it outbox.Item) {
	o.mu.Lock()
	o.items = append(o.items, it)
	o.mu.Unlock()
	if it.Sent != nil {
		it.Sent("1.1", nil)
	}
}

func (o *keptOut) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.items) == 0 {
		return ""
	}
	raw, _ := json.Marshal(o.items[len(o.items)-1].Msg)
	return string(raw)
}

// An alert whose query is gone is resolved only once the request store
// says how it ended: a read that fails leaves it as it is (a request may be
// carrying it out, and would go uncredited), and the next poll that can
// read credits the request.
func TestAlertNotResolvedOnAFailedRead(t *testing.T) {
	id := pg.Identity{Target: "t", PID: 7}
	db := &oneQuery{b: pg.Backend{Identity: id, State: pg.StateActive, BackendType: "client backend", Duration: time.Hour}}
	reqs := &flakyRequests{r: request.Request{ID: "R3", Action: pg.Cancel, Requester: "U0REQ", Decider: "U0APP"}}
	out := &keptOut{}
	w := New(context.Background(), Config{After: time.Minute, PollInterval: time.Second, QueryTimeout: time.Second, MaxPerPoll: 10},
		Deps{DB: db, Out: out, Requests: reqs, Sets: nopSets{}, Metrics: metrics.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	st := w.load(context.Background(), "t")
	w.poll(context.Background(), st)
	if n := len(out.items); n != 1 {
		t.Fatalf("alerts posted: %d", n)
	}
	db.mu.Lock()
	db.gone = true
	db.mu.Unlock()
	reqs.mu.Lock()
	reqs.down = true
	reqs.mu.Unlock()
	w.poll(context.Background(), st)
	if n := len(out.items); n != 1 || len(st.alerts) != 1 {
		t.Fatalf("the request store could not be read, yet the alert was resolved: %s", out.last())
	}
	reqs.mu.Lock()
	reqs.down = false
	reqs.mu.Unlock()
	w.poll(context.Background(), st)
	if got := out.last(); !strings.Contains(got, "request R3") || len(st.alerts) != 0 {
		t.Errorf("resolved without naming the request that ended it: %s", got)
	}
}
