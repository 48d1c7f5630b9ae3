package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/pg"
)

// fakeDB is an in-memory fleet.DB: listings, backends and outcomes as a
// test sets them, and a record of what was signalled.
type fakeDB struct {
	names    []string
	specs    []pg.TargetSpec // nil: one static spec per name
	listings []pg.Listing
	backends map[int32]pg.Backend
	errs     map[int32]error // Backend's error per pid
	outcome  map[int32]pg.Outcome
	verify   map[int32]pg.Verification
	reports  []pg.Report
	signals  []int32
	full     map[string]pg.Listing // Complete's answer per target; absent: ctx's error
}

func (f *fakeDB) Specs() []pg.TargetSpec {
	if f.specs != nil {
		return f.specs
	}
	var specs []pg.TargetSpec
	for _, n := range f.names {
		specs = append(specs, pg.TargetSpec{Name: n, DSN: "postgres://pgkill:secret@" + n})
	}
	return specs
}

func (f *fakeDB) List(_ context.Context, targets []string, _ pg.Filter) []pg.Listing {
	return f.listings
}

func (f *fakeDB) Backend(_ context.Context, target string, pid int32) (pg.Backend, error) {
	if err := f.errs[pid]; errors.Is(err, pg.ErrHidden) {
		return pg.Backend{}, fmt.Errorf("pid %d on %s belongs to role \"app\", whose sessions pgkill's role \"pgkill\" cannot see, so it cannot be identified or signalled (GRANT pg_read_all_stats TO pgkill): %w", pid, target, err)
	} else if err != nil {
		return pg.Backend{}, fmt.Errorf("pid %d on %s: %w", pid, target, err)
	}
	b, ok := f.backends[pid]
	if !ok {
		return pg.Backend{}, fmt.Errorf("pid %d on %s: %w", pid, target, pg.ErrNotFound)
	}
	return b, nil
}

func (f *fakeDB) Names() []string { return f.names }

func (f *fakeDB) Ping(context.Context, string) error { return nil }

func (f *fakeDB) RoleSetting(context.Context, string, string, string, string) (string, string, error) {
	return "", "", errors.New("not asked by the command line")
}

// SignalVerify records the pids signalled; each is Sent and ends at once
// unless the test set its outcome or verification.
func (f *fakeDB) SignalVerify(_ context.Context, a pg.Action, ids []pg.Identity, _ time.Duration) []pg.Attempt {
	as := make([]pg.Attempt, len(ids))
	for i, id := range ids {
		f.signals = append(f.signals, id.PID)
		as[i].Outcome = pg.Outcome{Action: a, Result: pg.Sent, ID: id}
		if o, ok := f.outcome[id.PID]; ok {
			as[i].Outcome = o
		}
		if as[i].Outcome.Result != pg.Sent {
			continue
		}
		as[i].Verified = pg.Verification{Ended: true, How: "query ended", After: 120 * time.Millisecond, Locks: -1}
		if v, ok := f.verify[id.PID]; ok {
			as[i].Verified = v
		}
	}
	return as
}

func (f *fakeDB) Complete(ctx context.Context, l pg.Listing) pg.Listing {
	if full, ok := f.full[l.Target]; ok {
		return full
	}
	<-ctx.Done()
	l.Err = fmt.Errorf("list %s: the blocking tree: %w", l.Target, &pg.Error{Kind: pg.ErrTimeout, Message: "no answer on pgkill's lock-table connection to " + l.Target})
	return l
}

func (f *fakeDB) Doctor(context.Context, []string) []pg.Report { return f.reports }

var _ fleet.DB = (*fakeDB)(nil)

func itoa(pid int32) string { return fmt.Sprint(pid) }

// backend is an active, signallable session on target prod.
func backend(pid int32, d time.Duration, query string) pg.Backend {
	return pg.Backend{
		Identity: pg.Identity{Target: "prod", PID: pid},
		Database: "orders", User: "app", Application: "web", Client: "10.0.0.1",
		BackendType: "client backend", State: pg.StateActive, Query: query, Duration: d,
	}
}

type ran struct {
	out, err string
	code     int
}

// run runs one command line against f with stdin.
func run(t *testing.T, f *fakeDB, stdin string, args ...string) ran {
	t.Helper()
	return runOpts(t, f, Options{MinDuration: time.Minute, VerifyTimeout: 10 * time.Second}, stdin, args...)
}

// runOpts runs one command line against f with stdin and options.
func runOpts(t *testing.T, f *fakeDB, opts Options, stdin string, args ...string) ran {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &CLI{DB: f, In: strings.NewReader(stdin), Out: &out, Err: &errOut, Opts: opts}
	var err error
	switch args[0] {
	case "list":
		err = c.List(context.Background(), args[1:])
	case "cancel":
		err = c.Signal(context.Background(), pg.Cancel, args[1:])
	case "terminate":
		err = c.Signal(context.Background(), pg.Terminate, args[1:])
	case "doctor":
		err = c.Doctor(context.Background(), args[1:])
	default:
		t.Fatalf("unknown command %q", args[0])
	}
	return ran{out.String(), errOut.String(), Code(err)}
}
