package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Inside a lock pile-up's storm — its waiters queued on the lock manager
// for their deadlock checks, which stalls new connections and reads of the
// lock table — pgkill, connected before it, still answers: pg.Fleet's
// listing names the holder (as the likely root when the lock table does
// not answer in time, in the tree when it does: a read of pg_locks, which
// shares the lock table's locks, may overtake the deadlock checks queued
// for them, so either can happen; the listing is asked while another read
// of pg_locks has been stalled for 300 ms), `pgkill list` prints that
// at once and the tree later, and `pgkill terminate` ends the holder while
// the storm is on. pgkill's own sessions are the same two before and after:
// no timeout closed one, no new one was opened.
func TestLockStorm(t *testing.T) {
	n := pgtest.StormWaiters(t, pgtest.CIStormWaiters)
	f := pg.Filter{Application: pgtest.StormApp + "*"}
	ctx := context.Background()
	storm, fleet, ours, start := stormListing(t, n, f)
	if storm == nil { // a storm too short on this machine: one twice the size
		storm, fleet, ours, start = stormListing(t, 2*n, f)
	}
	if storm == nil {
		t.Fatalf("two storms (%d and %d waiters) ended before the listing came: raise PGKILL_STORM_WAITERS", n, 2*n)
	}

	var listOut, listErr syncBuffer
	lister := &CLI{DB: fleet, Out: &listOut, Err: &listErr, Opts: Options{VerifyTimeout: 10 * time.Second}}
	listed := make(chan int)
	go func() { listed <- Code(lister.List(ctx, []string{"-app", pgtest.StormApp + "*", "-min", "0s"})) }()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(listOut.String(), "ROOT"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pgkill list printed no root within a minute:\n%s\n%s", listOut.String(), listErr.String())
		}
	}

	w := &watched{Fleet: fleet, storming: func() bool { return storm.On(t) }}
	var out bytes.Buffer
	terminator := &CLI{DB: w, Out: &out, Err: &out, In: strings.NewReader(""), Opts: Options{VerifyTimeout: 10 * time.Second}}
	code := Code(terminator.Signal(ctx, pg.Terminate, []string{"-y", fmt.Sprint(storm.Holder.PID)}))
	if code != ExitOK || !strings.Contains(out.String(), "ended: session ended") || !w.stormingAtSignal {
		t.Fatalf("pgkill terminate in the storm: exit %d, the storm on when the signal was sent: %v\n%s", code, w.stormingAtSignal, out.String())
	}
	t.Logf("cli: terminate sent %s after it was asked, in the storm", w.took)

	if code := <-listed; code != ExitOK {
		t.Errorf("pgkill list: exit %d\n%s\n%s", code, listOut.String(), listErr.String())
	}
	// A likely root is followed by the tree, unless the tree was read but
	// not worked out within its budget (under -race on a loaded machine,
	// 485 waiters took over 200 ms): the listing then says so, and that is
	// its last word.
	likely, tree := strings.Contains(listOut.String(), "likely ROOT"), strings.Contains(listOut.String(), "-- with the blocking tree")
	notComputed := strings.Contains(listErr.String(), "the blocking tree was not computed")
	if likely && !tree && !notComputed || !likely && tree {
		t.Errorf("pgkill list printed a likely root, then neither the tree nor why not (or a tree after no likely root):\n%s\n%s", listOut.String(), listErr.String())
	}
	storm.AwaitDrained(t, 5*time.Minute)
	t.Logf("the queue drained %s after the listing", time.Since(start))
	if err := storm.Err(); err != nil {
		t.Error(err)
	}
	if got := sessionsOf(t, pg.AppName); got != ours {
		t.Errorf("pgkill's sessions were %s before the storm, %s after", ours, got)
	}
}

// stormListing makes a storm of n waiters and checks pgkill's first
// listing in it. A storm that ended before the listing came (its length
// depends on the machine and its load) proves nothing: it is stopped and
// stormListing returns nil.
func stormListing(t *testing.T, n int, f pg.Filter) (*pgtest.Storm, *pg.Fleet, string, time.Time) {
	t.Helper()
	ctx := context.Background()
	storm := pgtest.NewStorm(t, fmt.Sprintf("storm%d", n), n)
	fleet, err := pg.NewFleet([]pg.TargetSpec{{Name: "storm", DSN: storm.DSN}}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)

	// Calm: a first waiter makes the listing read the lock table too, so
	// both of pgkill's connections are open before the pile-up.
	first := pgtest.NewSession(t, storm.DSN, pgtest.StormApp+"_first")
	first.Run("UPDATE hot SET v = v + 1 WHERE id = 1")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		l := fleet.List(ctx, nil, f)[0]
		if b := backendIn(l, storm.Holder.PID); l.Err == nil && b.RootBlocker() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder never listed as root: %+v", l)
		}
	}
	ours := sessionsOf(t, pg.AppName)

	storm.Start()
	storm.AwaitStorm(t, 20, 2*time.Minute)
	stall := storm.AwaitStall(t, 300*time.Millisecond, 2*time.Minute)
	start := time.Now()
	l := fleet.List(ctx, nil, f)[0]
	firstAnswer := time.Since(start)
	stalled := stall.Stalled()
	if !storm.On(t) {
		t.Logf("a storm of %d waiters ended before the listing came (%s)", n, firstAnswer)
		storm.Stop()
		return nil, nil, "", time.Time{}
	}
	holder := backendIn(l, storm.Holder.PID)
	if l.Err != nil || !(holder.LikelyRoot || (!l.Degraded && holder.RootBlocker())) || l.LockWaits < n/2 || len(l.Backends) < n {
		t.Fatalf("listing in the storm: %v, degraded %v (the lock table stalled throughout: %v), %d listed, %d lock waits, holder %+v, NoTree %q",
			l.Err, l.Degraded, stalled, len(l.Backends), l.LockWaits, holder, l.NoTree)
	}
	t.Logf("pg: first answer in the storm of %d after %s: %d sessions, degraded %v (the lock table stalled throughout: %v)", n, firstAnswer, len(l.Backends), l.Degraded, stalled)
	return storm, fleet, ours, start
}

// watched records whether the storm was still on when the signal (before
// its verification) returned. It signals one pid.
type watched struct {
	*pg.Fleet
	storming         func() bool
	stormingAtSignal bool
	took             time.Duration
}

func (w *watched) SignalVerify(ctx context.Context, a pg.Action, ids []pg.Identity, timeout time.Duration) []pg.Attempt {
	start := time.Now()
	outs, errs := w.SignalSet(ctx, a, ids)
	w.took = time.Since(start)
	w.stormingAtSignal = w.storming()
	at := pg.Attempt{Outcome: outs[0]}
	if errs[0] != nil {
		at.Err = errs[0].Error()
		return []pg.Attempt{at}
	}
	vs, verrs := w.VerifySet(ctx, outs, timeout)
	at.Verified = vs[0]
	if verrs[0] != nil {
		at.VerifyErr = verrs[0].Error()
	}
	return []pg.Attempt{at}
}

func backendIn(l pg.Listing, pid int32) pg.Backend {
	for _, b := range l.Backends {
		if b.PID == pid {
			return b
		}
	}
	return pg.Backend{}
}

// sessionsOf lists the pids of app's sessions, read in calm times.
func sessionsOf(t *testing.T, app string) string {
	t.Helper()
	return pgtest.Text(t, "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity WHERE application_name = $1", app)
}

// syncBuffer is a buffer one goroutine writes while another reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
