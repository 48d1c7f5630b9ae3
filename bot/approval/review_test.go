package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// stallApprove holds the first write of an approval until its request has
// expired by the store's clock: the approving process read the request
// (and the store's time) before the expiry, then stalled (a GC pause, a
// paused VM, a slow network) before its UPDATE reached the store.
type stallApprove struct {
	request.Records
	once sync.Once
}

func (s *stallApprove) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	if r.State == string(request.Approved) {
		s.once.Do(func() {
			for {
				got, now, err := s.Records.Record(ctx, r.ID)
				if err != nil || !now.Before(got.Expires) {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return s.Records.UpdateRecord(ctx, r)
}

// An approval that reaches the store after the request expired by the
// store's clock never signals (docs/approvals.md: "the approval step
// compares it with the store's time in the same step"). Store.Apply reads
// the record and clock_timestamp() in one statement and writes in another
// (UPDATE … WHERE version = $2), which does not compare expires_at with
// the store's clock again: an approval judged on a read from before the
// expiry lands after it, is recorded as decided before it, and signals.
func TestApprovalLandingAfterExpiryDoesNotSignal(t *testing.T) {
	db := newFakeFleet()
	s := request.NewStore(&stallApprove{Records: pgStore(t)})
	w, _ := newFlow(t, db, s)
	r := made(t, s, 51, 300*time.Millisecond)
	w.Approve(ctx, on("UAPP", r), r.ID)
	got, _ := s.Get(ctx, r.ID)
	if n := db.signalled(); n != 0 {
		t.Errorf("request %s expired at %s by the store's clock; its approval landed after that and signalled %d time(s) (recorded decided at %s, state %s)",
			r.ID, got.Expires.Format("15:04:05.000"), n, got.Decided.Format("15:04:05.000"), got.State)
	}
}

// A request pgkill itself closed (its card overdue, or Slack refused the
// card) is never shown as withdrawn by its requester: the card says why
// pgkill closed it. outcomeText (blocks/approval.go) ignores NotSent for
// Withdrawn and names the requester.
func TestClosedByPgkillNotShownAsWithdrawnByRequester(t *testing.T) {
	s := request.Memory()
	w, out := newFlow(t, newFakeFleet(), s)
	r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(52)}, Requester: "UREQ", Channel: "C", ThreadTS: "1.0"}, time.Hour, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitDue(t, s, r.ID)
	w.SweepOnce(ctx)
	var card string
	for _, it := range out.put() {
		if it.Key == cardKey(r.ID) {
			js, _ := json.Marshal(it.Msg)
			card = string(js)
		}
	}
	if card == "" {
		t.Fatalf("no closing card was put")
	}
	if strings.Contains(card, "Withdrawn* by \\u003c@UREQ\\u003e") || !strings.Contains(card, "never posted") {
		t.Errorf("the card of a request pgkill closed says its requester withdrew it, not why: %s", card)
	}
}

// instantSlack answers every call at once.
type instantSlack struct {
	mu sync.Mutex
	n  int
}

func (s *instantSlack) Post(context.Context, string, string, blocks.Message) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return fmt.Sprintf("9.%06d", s.n), nil
}
func (s *instantSlack) Update(context.Context, string, string, blocks.Message) error { return nil }
func (s *instantSlack) Respond(context.Context, string, bool, blocks.Message) error {
	return nil
}

// A request made by a live process whose card is simply waiting its turn
// in the outbox (Slack allows about one message a second per channel; a
// bulk request's member list is one message per 40 sessions) is not closed
// as "its card was never posted … the process that made it stopped". The
// card deadline (cardDue, 10 s) is judged by the sweep without regard to
// the outbox: here 20 messages queued in the channel hold the card for
// ~17 s, and the sweep withdraws the request at 10 s. (The test waits for
// the store's clock to pass that first deadline, since a request whose card
// is on its way is not due then.)
func TestCardWaitingInOutboxIsNotWithdrawn(t *testing.T) {
	s := request.Memory()
	out := outbox.New(&instantSlack{}, outbox.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	octx, stop := context.WithCancel(context.Background())
	defer stop()
	go out.Run(octx)
	checker := policy.NewChecker(&policy.Policy{Default: policy.Rules{Approvers: []string{"UAPP"}}}, nil)
	w := New(octx, Config{TTL: time.Hour, VerifyTimeout: time.Second, Budget: time.Minute, Margin: time.Minute, Command: "/pgkill", Sweep: time.Second},
		Deps{Store: s, Sets: request.MemorySets(), Fleet: newFakeFleet(), Out: out, Policy: checker, Metrics: metrics.New(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})

	// An earlier bulk request's member list (800 sessions) in the same channel.
	for i := range 20 {
		out.Put(outbox.Item{Key: fmt.Sprintf("members|R0|%d", i), Channel: "C", Thread: "1.0", Msg: blocks.Notice("sessions …")})
	}
	c := Click{User: "UREQ", Channel: "C", Thread: "1.0", ResponseURL: "https://hooks.example/req"}
	w.Make(ctx, c, Ask{Action: pg.Cancel, Kinds: []string{"cancel"}, Backend: pg.Backend{Identity: identity(53), State: pg.StateActive}}, "")
	open, _ := s.Open(ctx)
	if len(open) != 1 {
		t.Fatalf("open requests: %d", len(open))
	}
	r := open[0]
	// Past the card's first deadline, the sweeps of this replica and of
	// another (which knows nothing of this outbox) leave it alone.
	waitStoreTime(t, s, r.Deadline.Add(cardDue/3))
	other, _ := newFlow(t, newFakeFleet(), s)
	other.SweepOnce(ctx)
	w.SweepOnce(ctx)
	if got, _ := s.Get(ctx, r.ID); got.State != request.Pending {
		t.Errorf("a live request whose card waits in the outbox was closed by the sweep: %s %q", got.State, got.NotSent)
	}
}

// failFinish fails the first write of an outcome (a state-store blip:
// the connection dropped before the UPDATE reached it).
type failFinish struct {
	request.Records
	once sync.Once
}

func (s *failFinish) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	fail := false
	if r.State == string(request.Done) && !strings.Contains(string(r.Doc), `"Abandoned":true`) {
		s.once.Do(func() { fail = true })
	}
	if fail {
		return false, fmt.Errorf("state store: request %d → done: connection reset by peer", r.ID)
	}
	return s.Records.UpdateRecord(ctx, r)
}

// shown is what Slack ends up showing for key: the outbox keeps the
// highest version put, a later put of an equal version replacing it.
func shown(items []outbox.Item, key string) (blocks.Message, bool) {
	var best outbox.Item
	found := false
	for _, it := range items {
		if it.Key == key && (!found || it.Version >= best.Version) {
			best, found = it, true
		}
	}
	return best.Msg, found
}

// An outcome pgkill knows (signal sent, query ended, verified) is not lost
// to one failed write of its record: finish (execute.go) does not retry
// it, shows it on the card with Version+1, and leaves the request approved
// in the store; the sweep then closes it as abandoned — "pgkill stopped
// while it was signalling … may or may not have been sent" — at the same
// version, which replaces the true outcome on the card, and that guess is
// what the store, the audit trail and the alert's credit keep.
func TestKnownOutcomeNotReplacedByAbandonGuess(t *testing.T) {
	db := newFakeFleet()
	s := request.NewStore(&failFinish{Records: pgStore(t)})
	w, out := newFlow(t, db, s, flowOpts{budget: 100 * time.Millisecond, margin: 100 * time.Millisecond})
	r := made(t, s, 54, time.Hour)
	_, approved, _ := s.Due(ctx)
	w.Approve(ctx, on("UAPP", r), r.ID)
	if db.signalled() != 1 {
		t.Fatalf("signals: %d", db.signalled())
	}
	waitStoreTime(t, s, approved.Add(200*time.Millisecond)) // its approval's deadline: an unrecorded one is due
	w.SweepOnce(ctx)
	m, _ := shown(out.put(), cardKey(r.ID))
	js, _ := json.Marshal(m)
	got, _ := s.Get(ctx, r.ID)
	if strings.Contains(string(js), "may or may not") || got.Outcome.Result != pg.Sent {
		t.Errorf("the signal was sent and the query ended (verified), but the card ends saying %q and the store keeps err=%q outcome=%q",
			m.Text, got.Err, got.Outcome.Result)
	}
}

// downFinish fails every write of an outcome while down: a state store
// that stays unreachable for longer than the record budget.
type downFinish struct {
	request.Records
	down atomic.Bool
}

func (s *downFinish) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	if s.down.Load() && r.State == string(request.Done) && !strings.Contains(string(r.Doc), `"Abandoned":true`) {
		return false, fmt.Errorf("state store: request %d → done: connection reset by peer", r.ID)
	}
	return s.Records.UpdateRecord(ctx, r)
}

// An outcome its signaller could not record within its budget is written
// by that process's sweep once the store takes it — replacing the guess
// another replica's sweep wrote meanwhile — and shown on the card over it;
// that process's own sweep never writes a guess over what it knows.
func TestKnownOutcomeRecordedBySweepOverAGuess(t *testing.T) {
	st := pgStore(t)
	db := newFakeFleet()
	recs := &downFinish{Records: st}
	recs.down.Store(true)
	opts := flowOpts{budget: 100 * time.Millisecond, margin: 100 * time.Millisecond}
	w, out := newFlow(t, db, request.NewStore(recs), opts)
	w.recordBudget = 200 * time.Millisecond
	other, _ := newFlow(t, newFakeFleet(), request.NewStore(st), opts)
	s := request.NewStore(st)
	r := made(t, s, 56, time.Hour)
	w.Approve(ctx, on("UAPP", r), r.ID)
	waitDue(t, s, r.ID)
	w.SweepOnce(ctx) // the store still refuses: no guess from the process that knows
	if got, _ := s.Get(ctx, r.ID); got.State != request.Approved {
		t.Fatalf("the signaller's own sweep closed its request on a guess: %s %q", got.State, got.Err)
	}
	other.SweepOnce(ctx) // another replica does not know: it closes it
	if got, _ := s.Get(ctx, r.ID); !got.Abandoned {
		t.Fatalf("another replica's sweep did not close it: %s %q", got.State, got.Err)
	}
	recs.down.Store(false)
	w.SweepOnce(ctx)
	got, _ := s.Get(ctx, r.ID)
	if got.Abandoned || got.Err != "" || got.Outcome.Result != pg.Sent || !got.Verified.Ended {
		t.Errorf("the known outcome was not recorded over the guess: err=%q outcome=%q", got.Err, got.Outcome.Result)
	}
	m, _ := shown(out.put(), cardKey(r.ID))
	if js, _ := json.Marshal(m); strings.Contains(string(js), "may or may not") || !strings.Contains(string(js), "ended") || uint64(got.Version) <= uint64(r.Version)+2 {
		t.Errorf("the card shows %q at version %d", m.Text, got.Version)
	}
}

// A click is answered even when the state store stops answering: "a click
// it cannot record is refused with the reason, and nothing is signalled"
// (docs/ha.md). Button handlers run on the bot's work context, which has no
// deadline (bot/socket.go handle, bot/buttons.go Action), and the store's
// calls take that context as it is: against a store whose packets are
// dropped, Approve waits for TCP to give up (many minutes), says nothing,
// and holds one of the pool's four connections — a few clicks and every
// request, sweep and alert claim waits behind them.
func TestClickAnsweredWhenStateStoreBlackholed(t *testing.T) {
	dsn := pgtest.Database(t, "approval_unit")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	// A partition that drops packets (a security-group change, a lost AZ,
	// the old address of a failed-over RDS instance), not one that resets
	// connections.
	p := pgtest.NewProxy(t, u.Host)
	u.Host = p.Addr()
	st, err := pg.OpenStore(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	t.Cleanup(p.Close) // before st.Close: the pool waits for the connection the click holds
	s := request.NewStore(st)
	db := newFakeFleet()
	w, out := newFlow(t, db, s)
	r := made(t, s, 55, time.Hour)
	p.Freeze(true)
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); w.Approve(context.Background(), on("UAPP", r), r.ID) }()
	select {
	case <-done:
		t.Log("answered in", time.Since(start))
	case <-time.After(30 * time.Second):
		t.Fatalf("an Approve click got no answer in 30 s while the state store dropped packets (answers so far: %d)", len(out.put()))
	}
	if db.signalled() != 0 {
		t.Errorf("signalled %d time(s) with the store unreachable", db.signalled())
	}
	if got := told(out, "UAPP"); !strings.Contains(got, "no answer within") || !strings.Contains(got, "Nothing was signalled") {
		t.Errorf("the approver was told %q, not why nothing happened", got)
	}
}

// waitStoreTime waits until the store's clock is past at.
func waitStoreTime(t *testing.T, s *request.Store, at time.Time) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, now, err := s.Due(ctx); err == nil && now.After(at) {
			return
		}
	}
	t.Fatalf("the store's clock never passed %s", at)
}
