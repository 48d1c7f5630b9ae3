package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fakeFleet has one target, "t", whose backends all run; a signal is
// recorded and ends its backend, unless told otherwise.
type fakeFleet struct {
	mu      sync.Mutex
	signals []pg.Identity
	sent    chan struct{} // closed at the first signal
	// verify, if set, answers the verification of each signal sent.
	verify func(pg.Outcome) (pg.Verification, error)
}

func newFakeFleet() *fakeFleet { return &fakeFleet{sent: make(chan struct{})} }

func (f *fakeFleet) Names() []string        { return []string{"t"} }
func (f *fakeFleet) Specs() []pg.TargetSpec { return []pg.TargetSpec{{Name: "t"}} }
func (f *fakeFleet) RoleSetting(context.Context, string, string, string, string) (string, string, error) {
	return "0", "the server's setting", nil
}
func (f *fakeFleet) Backend(_ context.Context, target string, pid int32) (pg.Backend, error) {
	return pg.Backend{Identity: pg.Identity{Target: target, PID: pid}, State: pg.StateActive, BackendType: "client backend"}, nil
}
func (f *fakeFleet) SignalVerify(_ context.Context, a pg.Action, ids []pg.Identity, _ time.Duration) []pg.Attempt {
	out := make([]pg.Attempt, len(ids))
	for i, id := range ids {
		f.mu.Lock()
		if len(f.signals) == 0 {
			close(f.sent)
		}
		f.signals = append(f.signals, id)
		f.mu.Unlock()
		o := pg.Outcome{Action: a, ID: id, Result: pg.Sent}
		v, err := pg.Verification{Ended: true, How: "query ended"}, error(nil)
		if f.verify != nil {
			v, err = f.verify(o)
		}
		out[i] = pg.Attempt{Outcome: o, Verified: v}
		if err != nil {
			out[i].VerifyErr = err.Error()
		}
	}
	return out
}

func (f *fakeFleet) signalled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.signals)
}

// recOut is an outbox that keeps what is put, and reports each new message
// posted at once.
type recOut struct {
	mu    sync.Mutex
	items []outbox.Item
	seq   int
}

func (o *recOut) Put(it outbox.Item) {
	o.mu.Lock()
	o.items = append(o.items, it)
	o.seq++
	ts := fmt.Sprintf("1.%06d", o.seq)
	o.mu.Unlock()
	if it.Sent != nil {
		if it.TS != "" {
			ts = it.TS
		}
		it.Sent(ts, nil)
	}
}

func (o *recOut) put() []outbox.Item {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]outbox.Item(nil), o.items...)
}

type flowOpts struct {
	budget, margin time.Duration
	log            *slog.Logger
	pauses         autopilot.Pauses
	viewers        []string // empty: anyone
	requesters     []string // empty: anyone who may view
}

// newFlow is a workflow over fakes and the request store s; UAPP approves.
func newFlow(t testing.TB, db Fleet, s *request.Store, o ...flowOpts) (*Workflow, *recOut) {
	t.Helper()
	opts := flowOpts{budget: time.Minute, margin: time.Minute}
	if len(o) > 0 {
		opts = o[0]
	}
	if opts.log == nil {
		opts.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	work, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := &recOut{}
	checker := policy.NewChecker(&policy.Policy{Default: policy.Rules{Approvers: []string{"UAPP"}, Viewers: opts.viewers, Requesters: opts.requesters}}, nil)
	w := New(work, Config{TTL: time.Minute, VerifyTimeout: time.Second, Budget: opts.budget, Margin: opts.margin, Command: "/pgkill", Sweep: time.Second},
		Deps{Store: s, Sets: request.MemorySets(), Fleet: db, Out: out, Policy: checker, Pauses: opts.pauses, Metrics: metrics.New(), Log: opts.log})
	return w, out
}

// stores runs test with the request store in memory and in PostgreSQL.
func stores(t *testing.T, test func(t *testing.T, s *request.Store)) {
	t.Run("memory", func(t *testing.T) { test(t, request.Memory()) })
	t.Run("postgres", func(t *testing.T) { test(t, request.NewStore(pgStore(t))) })
}

func pgStore(t *testing.T) *pg.Store {
	t.Helper()
	st, err := pg.OpenStore(context.Background(), pgtest.Database(t, "approval_unit"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// identity makes a backend identity unique to this test run, since the
// stored requests of all tests share one table.
func identity(pid int32) pg.Identity {
	return pg.Identity{Target: "t", PID: pid, BackendStart: time.Now(), QueryStart: time.Now().Round(time.Microsecond)}
}

var ctx = context.Background()

// made adds a pending request for backend pid with its card at 1.1 in C.
func made(t testing.TB, s *request.Store, pid int32, ttl time.Duration, members ...pg.Backend) request.Request {
	t.Helper()
	r := request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(pid)}, Requester: "UREQ", Channel: "C", Members: members}
	r, created, err := s.Add(ctx, r, ttl, 0)
	if err != nil || !created {
		t.Fatalf("add: %v %v", created, err)
	}
	if r, err = s.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: "1.1"}); err != nil {
		t.Fatal(err)
	}
	return r
}

// on is user's click on r's card.
func on(user string, r request.Request) Click {
	return Click{User: user, Channel: r.Channel, MessageTS: r.CardTS, ResponseURL: "https://hooks.example/" + user}
}

// waitDue waits until the store says request id is due.
func waitDue(t *testing.T, s *request.Store, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		due, _, err := s.Due(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range due {
			if r.ID == id {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never due", id)
}

// An approval that comes after the request expired by the store's clock
// does not signal, whether or not a sweep expired it first.
func TestApproveAfterExpiryDoesNotSignal(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		db := newFakeFleet()
		w, _ := newFlow(t, db, s)
		r := made(t, s, 11, 50*time.Millisecond)
		waitDue(t, s, r.ID)
		w.Approve(ctx, on("UAPP", r), r.ID)
		if n := db.signalled(); n != 0 {
			t.Fatalf("an expired request signalled %d time(s)", n)
		}
		if got, _ := s.Get(ctx, r.ID); got.State != request.Expired {
			t.Errorf("state after a late approval = %s, want expired", got.State)
		}
	})
}

// The sweep expires what is due by the store's clock and nothing else,
// and closes an approval whose signaller did not record what it did by
// its deadline — saying the signal may have been sent.
func TestSweepExpiresAndCloses(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		w, _ := newFlow(t, newFakeFleet(), s)
		late := made(t, s, 21, 50*time.Millisecond)
		live := made(t, s, 22, time.Hour)
		stuck := made(t, s, 23, time.Hour)
		if _, err := s.Apply(ctx, stuck.ID, request.Event{Kind: request.Approve, User: "UAPP", Budget: 50 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		waitDue(t, s, late.ID)
		waitDue(t, s, stuck.ID)
		w.SweepOnce(ctx)
		for _, c := range []struct {
			id   string
			want request.State
		}{{late.ID, request.Expired}, {live.ID, request.Pending}, {stuck.ID, request.Done}} {
			if got, _ := s.Get(ctx, c.id); got.State != c.want {
				t.Errorf("%s after the sweep: %s, want %s", c.id, got.State, c.want)
			}
		}
		if got, _ := s.Get(ctx, stuck.ID); !strings.Contains(got.Err, "may or may not have been sent") {
			t.Errorf("abandoned approval recorded as %q", got.Err)
		}
	})
}

// The sweep does not close an approval whose process is alive and still
// verifying: its deadline is not past by the store's clock.
func TestSweepSparesLiveApproval(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		release := make(chan struct{})
		db := newFakeFleet()
		db.verify = func(pg.Outcome) (pg.Verification, error) {
			<-release
			return pg.Verification{Ended: true, How: "query ended"}, nil
		}
		w, _ := newFlow(t, db, s)
		r := made(t, s, 32, time.Hour)
		done := make(chan struct{})
		go func() { defer close(done); w.Approve(ctx, on("UAPP", r), r.ID) }()
		<-db.sent
		w.SweepOnce(ctx)
		close(release)
		<-done
		if got, _ := s.Get(ctx, r.ID); got.Err != "" || got.State != request.Done || !got.Verified.Ended {
			t.Errorf("a live, successful approval was recorded as %s %q", got.State, got.Err)
		}
	})
}

// A signal PostgreSQL accepted (Sent) whose verification then failed is
// never reported as "may or may not have been sent", single or bulk.
func TestVerifyErrorAfterSentSaysSent(t *testing.T) {
	db := newFakeFleet()
	db.verify = func(pg.Outcome) (pg.Verification, error) {
		return pg.Verification{Locks: -1}, errors.New("verify 1 backends on t: connection reset")
	}
	s := request.Memory()
	w, _ := newFlow(t, db, s)
	single := made(t, s, 31, time.Hour)
	bulk := made(t, s, 0, time.Hour, pg.Backend{Identity: identity(41), State: pg.StateActive}, pg.Backend{Identity: identity(42), State: pg.StateActive})
	for _, r := range []request.Request{single, bulk} {
		w.Approve(ctx, on("UAPP", r), r.ID)
		got, _ := s.Get(ctx, r.ID)
		js, _ := json.Marshal(w.cards.render(got))
		for _, bad := range []string{"may or may not have been sent", "could not be signalled"} {
			if strings.Contains(string(js), bad) {
				t.Errorf("%s: signals were sent but the card says %q", r.ID, bad)
			}
		}
	}
}

// lostUpdate is a store whose first write to approved commits but whose
// reply is lost (the connection drops after COMMIT).
type lostUpdate struct {
	request.Records
	lost bool
}

func (s *lostUpdate) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	ok, err := s.Records.UpdateRecord(ctx, r)
	if err == nil && !s.lost && r.State == string(request.Approved) {
		s.lost = true
		return false, errors.New("state store: request → approved: unexpected EOF")
	}
	return ok, err
}

// An approval whose commit reply was lost is recognised as committed and
// carried out: it is never left approved in the store and unsignalled.
func TestLostCommitReplyStillSignals(t *testing.T) {
	db := newFakeFleet()
	s := request.NewStore(&lostUpdate{Records: pgStore(t)})
	w, _ := newFlow(t, db, s)
	r := made(t, s, 33, time.Hour)
	w.Approve(ctx, on("UAPP", r), r.ID)
	if got, _ := s.Get(ctx, r.ID); got.State != request.Done || db.signalled() != 1 {
		t.Errorf("after a lost reply: state=%s signals=%d", got.State, db.signalled())
	}
}

// blockingLog is a slog handler that holds the first "audit" record of
// event until release is closed: a log write that blocks (a full pipe, a
// stalled disk).
type blockingLog struct {
	slog.Handler
	event   string
	held    chan struct{}
	release chan struct{}
	once    *sync.Once
}

func (h blockingLog) Handle(ctx context.Context, r slog.Record) error {
	var event string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "event" {
			event = a.Value.String()
		}
		return true
	})
	if r.Message == "audit" && event == h.event {
		h.once.Do(func() { close(h.held); <-h.release })
	}
	return h.Handler.Handle(ctx, r)
}

func (h blockingLog) WithAttrs(as []slog.Attr) slog.Handler {
	return blockingLog{h.Handler.WithAttrs(as), h.event, h.held, h.release, h.once}
}

// A replica that records the last approval and then stalls (its log write
// blocks) does not signal once another replica's sweep has closed the
// request as abandoned: that card says "may or may not have been sent", and
// a signal after it would be one nobody sees. What it then records says
// nothing was signalled.
func TestStalledReplicaDoesNotSignalAfterClose(t *testing.T) {
	st := pgStore(t)
	db := newFakeFleet()
	log := blockingLog{Handler: slog.NewTextHandler(io.Discard, nil), event: AuditApprove,
		held: make(chan struct{}), release: make(chan struct{}), once: &sync.Once{}}
	budget := 300 * time.Millisecond
	stalled, _ := newFlow(t, db, request.NewStore(st), flowOpts{budget: budget, log: slog.New(log)})
	sweeper, _ := newFlow(t, db, request.NewStore(st), flowOpts{budget: budget})
	s := request.NewStore(st)
	r := made(t, s, 41, time.Hour)
	done := make(chan struct{})
	go func() { defer close(done); stalled.Approve(ctx, on("UAPP", r), r.ID) }()
	<-log.held
	waitDue(t, s, r.ID)
	sweeper.SweepOnce(ctx)
	if got, _ := s.Get(ctx, r.ID); got.State != request.Done || !strings.Contains(got.Err, "may or may not") {
		t.Fatalf("the sweep did not close it as abandoned: %s %q", got.State, got.Err)
	}
	close(log.release)
	<-done
	if n := db.signalled(); n != 0 {
		t.Errorf("the stalled replica signalled %d time(s) after its request was closed", n)
	}
	if got, _ := s.Get(ctx, r.ID); got.Err != "" || !strings.Contains(got.NotSent, "nothing was signalled") {
		t.Errorf("recorded as err=%q notSent=%q", got.Err, got.NotSent)
	}
}

// lostAdd loses the reply of the first AddRecord: the row is written, the
// caller gets an error (the connection dropped after COMMIT).
type lostAdd struct {
	request.Records
	once sync.Once
}

func (s *lostAdd) AddRecord(ctx context.Context, r pg.Record, ttl, due time.Duration) (pg.Record, bool, error) {
	got, created, err := s.Records.AddRecord(ctx, r, ttl, due)
	lost := false
	s.once.Do(func() { lost = true })
	if lost && err == nil {
		return pg.Record{}, false, errors.New("state store: add request: unexpected EOF")
	}
	return got, created, err
}

// A request whose add lost its reply is found again by its key and gets
// its card — never left pending with no card, which nobody could approve.
func TestLostAddReplyGetsItsCard(t *testing.T) {
	s := request.NewStore(&lostAdd{Records: pgStore(t)})
	w, out := newFlow(t, newFakeFleet(), s)
	c := Click{User: "UREQ", Channel: "C", Thread: "1.0", ResponseURL: "https://hooks.example/req"}
	w.Make(ctx, c, Ask{Action: pg.Cancel, Kinds: []string{"cancel"}, Backend: pg.Backend{Identity: identity(44), State: pg.StateActive}}, "")
	w.Wait(10 * time.Second)
	open, _ := s.Open(ctx)
	found := false
	for _, r := range open {
		if r.Backend.PID == 44 {
			found = true
			if r.CardTS == "" {
				t.Errorf("request %s is pending with no card: nobody can approve it", r.ID)
			}
		}
	}
	if !found {
		t.Fatalf("no request made; put %v", out.put())
	}
}

// A request made by a process that stopped before recording its card is
// closed by the sweep once the card is overdue, saying so.
func TestCardNeverPostedIsClosed(t *testing.T) {
	stores(t, func(t *testing.T, s *request.Store) {
		w, _ := newFlow(t, newFakeFleet(), s)
		r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(45)}, Requester: "UREQ", Channel: "C"}, time.Hour, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		waitDue(t, s, r.ID)
		w.SweepOnce(ctx)
		if got, _ := s.Get(ctx, r.ID); got.State != request.Withdrawn || !strings.Contains(got.NotSent, "never posted") {
			t.Errorf("a request with no card: %s %q", got.State, got.NotSent)
		}
	})
}

// Names chosen by database clients are shown verbatim in the audit
// channel: never as mrkdwn formatting, mentions or links; pgkill itself is
// never shown as a user mention.
func TestAuditLineFormatsUntrustedNames(t *testing.T) {
	w, out := newFlow(t, newFakeFleet(), request.Memory())
	w.cfg.AuditChannel = "CAUDIT"
	r := request.Request{ID: "R7", Action: pg.Terminate, Requester: "UREQ", State: request.Expired, Backend: pg.Backend{
		Identity: identity(31), User: "*bold*_it_", Database: "see https://evil.example/x <!here>", Application: "~strike~"}}
	w.audit(AuditExpire, "", r)
	var text string
	for _, it := range out.put() {
		if it.Channel == "CAUDIT" {
			js, _ := json.Marshal(it.Msg.Blocks)
			text = strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(js))
		}
	}
	for _, bad := range []string{"<@pgkill>", "<@>", " *bold*", "<!here>", "by <@"} {
		if strings.Contains(text, bad) {
			t.Errorf("audit line contains %q: %s", bad, text)
		}
	}
	for _, want := range []string{"`*bold*_it_`", "`see https://evil.example/x", "`~strike~`", "R7", "expire", "by pgkill"} {
		if !strings.Contains(text, want) {
			t.Errorf("audit line lacks %q: %s", want, text)
		}
	}
}
