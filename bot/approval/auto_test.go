package approval

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// rule is an autopilot rule that acts (mode act) on every session of t
// running a minute, after countdown.
func rule(name string, mode autopilot.Mode, countdown time.Duration) autopilot.Rule {
	return autopilot.Rule{Name: name, Duration: time.Minute, Action: autopilot.Terminate, Countdown: countdown, Mode: mode, Limit: 3, Window: time.Hour}
}

func firing(r autopilot.Rule, pid int32) autopilot.Firing {
	return autopilot.Firing{Rule: r, Backend: pg.Backend{Identity: identity(pid), BackendType: "client backend", State: pg.StateActive,
		User: "app", Database: "shop", Duration: 20 * time.Minute}}
}

// fired fires f and returns the request it made, once its card is
// recorded.
func fired(t *testing.T, w *Workflow, s *request.Store, f autopilot.Firing) request.Request {
	t.Helper()
	w.Autopilot().Fire(ctx, []autopilot.Firing{f}, "CALERT")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		open, err := s.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range open {
			if r.Auto != nil && r.Backend.PID == f.Backend.PID && r.CardTS != "" {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no card for the rule's request on pid %d", f.Backend.PID)
	return request.Request{}
}

func cardText(t *testing.T, w *Workflow, s *request.Store, id string) string {
	t.Helper()
	r, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(w.cards.render(r))
	return string(js)
}

// A dry run posts what the rule would do, signals nothing at its deadline,
// and cannot be made to signal with Do it now.
func TestAutoDryRunSignalsNothing(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		db := newFakeFleet()
		w, _ := newFlow(t, db, s)
		r := fired(t, w, s, firing(rule("dry", autopilot.DryRun, 50*time.Millisecond), 501))
		if c := cardText(t, w, s, r.ID); !strings.Contains(c, "Dry run") || strings.Contains(c, "Do it now") {
			t.Errorf("dry-run card: %s", c)
		}
		w.Approve(ctx, on("UAPP", r), r.ID) // a crafted click: the card has no such button
		waitDue(t, s, r.ID)
		w.SweepOnce(ctx)
		got, _ := s.Get(ctx, r.ID)
		if db.signalled() != 0 || got.State != request.Expired || !strings.HasPrefix(got.NotSent, "dry run: rule dry would have terminated") {
			t.Fatalf("dry run: %d signals, %s %q", db.signalled(), got.State, got.NotSent)
		}
	})
}

// Stop before the deadline signals nothing, and needs only to see the
// target; a person who may not see it is refused.
func TestAutoStop(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		db := newFakeFleet()
		w, out := newFlow(t, db, s, flowOpts{budget: time.Minute, margin: time.Minute, viewers: []string{"UAPP", "UVIEW"}})
		r := fired(t, w, s, firing(rule("stop", autopilot.Act, 50*time.Millisecond), 502))
		w.Autopilot().Stop(ctx, on("USTRANGER", r), r.ID)
		if got, _ := s.Get(ctx, r.ID); got.State != request.Pending {
			t.Fatalf("a stranger stopped it: %s", got.State)
		}
		if !strings.Contains(told(out, "USTRANGER"), "may") {
			t.Errorf("the stranger was told %q", told(out, "USTRANGER"))
		}
		w.Autopilot().Stop(ctx, on("UVIEW", r), r.ID)
		time.Sleep(100 * time.Millisecond) // past the countdown: the sweep finds it decided
		w.SweepOnce(ctx)
		got, _ := s.Get(ctx, r.ID)
		if db.signalled() != 0 || got.State != request.Denied || got.Decider != "UVIEW" {
			t.Fatalf("after Stop: %d signals, %s by %s", db.signalled(), got.State, got.Decider)
		}
		if c := cardText(t, w, s, r.ID); !strings.Contains(c, "Stopped") || !strings.Contains(c, "Nothing was signalled") {
			t.Errorf("stopped card: %s", c)
		}
	})
}

// Do it now is an approver's: it signals at once, before the countdown
// ends; a viewer's click is refused.
func TestAutoDoItNow(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		db := newFakeFleet()
		w, _ := newFlow(t, db, s)
		r := fired(t, w, s, firing(rule("now", autopilot.Act, time.Hour), 503))
		w.Approve(ctx, on("UVIEW", r), r.ID)
		if db.signalled() != 0 {
			t.Fatal("a viewer's Do it now signalled")
		}
		w.Approve(ctx, on("UAPP", r), r.ID)
		got, _ := s.Get(ctx, r.ID)
		if db.signalled() != 1 || got.State != request.Done || got.Decider != "UAPP" {
			t.Fatalf("Do it now: %d signals, %s by %s", db.signalled(), got.State, got.Decider)
		}
		if c := cardText(t, w, s, r.ID); !strings.Contains(c, "done now by") {
			t.Errorf("card after Do it now: %s", c)
		}
	})
}

// At the deadline the rule's request is carried out exactly once, however
// many replicas sweep at once, with the rule named as the actor; the rule
// does not fire again on the same execution.
func TestAutoDeadlineOnce(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		db := newFakeFleet()
		w, _ := newFlow(t, db, s)
		others := []*Workflow{w}
		for range 2 {
			o, _ := newFlow(t, db, s)
			others = append(others, o)
		}
		f := firing(rule("once", autopilot.Act, 50*time.Millisecond), 504)
		r := fired(t, w, s, f)
		waitDue(t, s, r.ID)
		var wg sync.WaitGroup
		for _, o := range others {
			wg.Add(1)
			go func() { defer wg.Done(); o.SweepOnce(ctx) }()
		}
		wg.Wait()
		got, _ := s.Get(ctx, r.ID)
		if db.signalled() != 1 || got.State != request.Done || got.Decider != "autopilot:once" {
			t.Fatalf("at the deadline: %d signals, %s by %s", db.signalled(), got.State, got.Decider)
		}
		if got.Prevent == nil || got.Prevent.Setting != "statement_timeout" || got.Prevent.Value != "15min" || got.Prevent.Current != "0 (off)" {
			t.Errorf("prevention: %+v", got.Prevent)
		}
		w.Autopilot().Fire(ctx, []autopilot.Firing{f}, "CALERT")
		if open := openOf(t, s, "once"); len(open) != 0 {
			t.Errorf("the rule fired again on the same execution: %d open", len(open))
		}
	})
}

// A rule approves its own request only once its countdown has ended, by
// the store's clock: the state machine refuses it earlier.
func TestAutoNotBeforeDeadline(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		w, _ := newFlow(t, newFakeFleet(), s)
		r := fired(t, w, s, firing(rule("early", autopilot.Act, time.Hour), 505))
		if _, err := s.Apply(ctx, r.ID, request.Event{Kind: request.Approve, User: r.Auto.Actor(), SelfApproval: true}); err != request.ErrNotDue {
			t.Fatalf("the rule's approval before its deadline: %v", err)
		}
	})
}

// The breaker trips at the rule's limit on a target: the firing past it
// makes no request, a card says so, and the rule fires again once an
// approver resumes it.
func TestAutoBreaker(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		w, out := newFlow(t, newFakeFleet(), s)
		r := rule("brk", autopilot.DryRun, time.Hour)
		r.Limit = 2
		for pid := int32(511); pid < 513; pid++ {
			fired(t, w, s, firing(r, pid))
		}
		w.Autopilot().Fire(ctx, []autopilot.Firing{firing(r, 513)}, "CALERT")
		w.Autopilot().Fire(ctx, []autopilot.Firing{firing(r, 514)}, "CALERT")
		open := openOf(t, s, "brk")
		if len(open) != 2 {
			t.Fatalf("past its limit the rule made requests: %d open", len(open))
		}
		breakers := 0
		for _, it := range out.put() {
			if strings.HasPrefix(it.Key, "breaker|brk|t") {
				breakers++
			}
		}
		if breakers != 1 {
			t.Errorf("%d breaker cards, want 1", breakers)
		}
		ps, _ := w.Autopilot().Pauses(ctx)
		if _, stopped := autopilot.Stopped(ps, "brk", "t"); !stopped {
			t.Fatal("no breaker recorded")
		}
		w.Autopilot().Resume(ctx, Click{User: "UVIEW", ResponseURL: "https://hooks.example/UVIEW"}, "brk", "t", nil, "CALERT")
		if ps, _ := w.Autopilot().Pauses(ctx); len(ps) != 1 {
			t.Fatal("a viewer reset the breaker")
		}
		w.Autopilot().Resume(ctx, Click{User: "UAPP", ResponseURL: "https://hooks.example/UAPP"}, "brk", "t", nil, "CALERT")
		r.Limit = 3
		fired(t, w, s, firing(r, 515))
	})
}

// A pause holds in the state store: a workflow made later (a restart,
// another replica) sees it, fires nothing, and a countdown under way ends
// without a signal.
func TestAutoPauseHolds(t *testing.T) {
	st := pgStore(t)
	s := request.NewStore(st)
	db := newFakeFleet()
	w, _ := newFlow(t, db, s, flowOpts{budget: time.Minute, margin: time.Minute, pauses: autopilot.StoredPauses(st)})
	under := fired(t, w, s, firing(rule("pause", autopilot.Act, 50*time.Millisecond), 521))
	w.Autopilot().Pause(ctx, Click{User: "UAPP", ResponseURL: "https://hooks.example/UAPP"}, "t", nil, "CALERT")

	restarted, _ := newFlow(t, db, s, flowOpts{budget: time.Minute, margin: time.Minute, pauses: autopilot.StoredPauses(st)})
	restarted.Autopilot().Fire(ctx, []autopilot.Firing{firing(rule("pause", autopilot.Act, 50*time.Millisecond), 522)}, "CALERT")
	waitDue(t, s, under.ID)
	restarted.SweepOnce(ctx)
	got, _ := s.Get(ctx, under.ID)
	if db.signalled() != 0 || got.State != request.Withdrawn || !strings.Contains(got.NotSent, "paused") {
		t.Fatalf("paused: %d signals, %s %q", db.signalled(), got.State, got.NotSent)
	}
	if open := openOf(t, s, "pause"); len(open) != 0 {
		t.Fatalf("a paused rule made a request: %+v", open)
	}
	restarted.Autopilot().Resume(ctx, Click{User: "UAPP", ResponseURL: "https://hooks.example/UAPP"}, "", "t", nil, "CALERT")
	fired(t, restarted, s, firing(rule("pause", autopilot.Act, time.Hour), 523))
}

// Cancel then terminate: what the cancel did not end gets a terminate of
// its own, with its own countdown.
func TestAutoEscalates(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		db := newFakeFleet()
		db.verify = func(pg.Outcome) (pg.Verification, error) {
			return pg.Verification{Ended: false, How: "still running"}, nil
		}
		w, _ := newFlow(t, db, s)
		r := rule("esc", autopilot.Act, 50*time.Millisecond)
		r.Action, r.EscalateAfter = autopilot.CancelThenTerminate, time.Hour
		first := fired(t, w, s, firing(r, 531))
		if first.Action != pg.Cancel {
			t.Fatalf("first action %s", first.Action)
		}
		waitDue(t, s, first.ID)
		w.SweepOnce(ctx)
		open := openOf(t, s, "esc")
		if len(open) != 1 || open[0].Action != pg.Terminate || open[0].Auto == nil || !strings.Contains(open[0].Auto.Why, first.ID) {
			t.Fatalf("after a cancel that did not end it: %+v", open)
		}
	})
}

// told is what was told privately to user.
func told(o *recOut, user string) string {
	var s []string
	for _, it := range o.put() {
		if strings.Contains(it.URL, user) {
			js, _ := json.Marshal(it.Msg)
			s = append(s, string(js))
		}
	}
	return strings.Join(s, "\n")
}

// openOf is the open requests of rule (the stored requests of every test
// share one table).
func openOf(t *testing.T, s *request.Store, rule string) []request.Request {
	t.Helper()
	open, err := s.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []request.Request
	for _, r := range open {
		if r.Auto != nil && r.Auto.Rule == rule {
			out = append(out, r)
		}
	}
	return out
}
