// Package approval runs the request workflow: requests are made, approved,
// denied, withdrawn, expired and carried out here, and each request's card
// is kept showing what happened. It speaks to Slack only through the outbox.
package approval

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// Fleet is what the workflow needs of the databases.
type Fleet interface {
	// Names lists the targets now in the fleet.
	Names() []string
	// Backend reads one pid's current state; pg.ErrNotFound when there is none.
	Backend(ctx context.Context, target string, pid int32) (pg.Backend, error)
	// SignalVerify signals each backend that still has its identity, in
	// the statement that checks it, and watches those signalled.
	SignalVerify(ctx context.Context, action pg.Action, ids []pg.Identity, timeout time.Duration) []pg.Attempt
	// Specs are the targets with where they come from (RDS/Aurora).
	Specs() []pg.TargetSpec
	// RoleSetting says what a setting is for a role's sessions in a
	// database, and where that comes from.
	RoleSetting(ctx context.Context, target, role, database, name string) (value, source string, err error)
}

// Outbox is where every Slack write goes.
type Outbox interface {
	Put(outbox.Item)
}

// Config is what the workflow is told of pgkill's settings.
type Config struct {
	TTL           time.Duration // PGKILL_APPROVAL_TTL
	VerifyTimeout time.Duration // PGKILL_VERIFY_TIMEOUT
	// Budget bounds a signal and its verification: an approved request
	// whose signaller has not recorded what it did by then (and Margin
	// after) is closed by the sweep.
	Budget       time.Duration
	Margin       time.Duration
	SelfApproval bool   // PGKILL_SELF_APPROVAL
	BulkMax      int    // PGKILL_BULK_MAX
	Command      string // PGKILL_COMMAND, for the answers that quote it
	AuditChannel string // PGKILL_AUDIT_CHANNEL; "" for the log only
	Sweep        time.Duration
}

// Workflow is the request workflow. Its methods are safe for concurrent
// use; each answers its user itself, privately, through the outbox.
type Workflow struct {
	cfg     Config
	store   *request.Store
	sets    request.Sets
	db      Fleet
	out     Outbox
	policy  *policy.Checker
	reasons policy.Reasons
	auto    *Autopilot
	metrics *metrics.Metrics
	log     *slog.Logger

	// known, when set, lists every target some live replica knows (the
	// state store's evidence): a target this replica does not know has
	// left the fleet only if none knows it.
	known func(ctx context.Context) ([]string, error)

	// work runs what outlives a handler (a card's recording); Wait waits.
	work     context.Context
	inflight inflight

	owed         owed          // outcomes known here that the store lacks
	cards        *cards        // the requests' cards in Slack
	recordBudget time.Duration // recordBudget; shorter in tests
}

// inflight counts goroutines that may start while another goroutine waits
// for them to end (a sync.WaitGroup may not be added to from zero then).
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0; nil while n is 0
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.zero)
		f.zero = nil
	}
}

// wait waits until none runs, at most d.
func (f *inflight) wait(d time.Duration) bool {
	deadline := time.After(d)
	for {
		f.mu.Lock()
		zero := f.zero
		f.mu.Unlock()
		if zero == nil {
			return true
		}
		select {
		case <-zero:
		case <-deadline:
			return false
		}
	}
}

// Deps are the workflow's parts.
type Deps struct {
	Store   *request.Store
	Sets    request.Sets
	Fleet   Fleet
	Out     Outbox
	Policy  *policy.Checker
	Reasons policy.Reasons
	Pauses  autopilot.Pauses // nil: in this process
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// New makes the workflow; work bounds what it runs in the background.
func New(work context.Context, cfg Config, d Deps) *Workflow {
	if cfg.BulkMax <= 0 {
		cfg.BulkMax = 1000
	}
	if d.Pauses == nil {
		d.Pauses = autopilot.MemoryPauses()
	}
	w := &Workflow{cfg: cfg, store: d.Store, sets: d.Sets, db: d.Fleet, out: d.Out, policy: d.Policy, reasons: d.Reasons,
		metrics: d.Metrics, log: d.Log, work: work, recordBudget: recordBudget}
	w.auto = &Autopilot{w: w, pauses: d.Pauses}
	w.cards = &cards{w: w}
	return w
}

// Autopilot is the workflow's autopilot: it fires the rules' requests,
// and Stop, Pause and Resume act on them.
func (w *Workflow) Autopilot() *Autopilot { return w.auto }

// KnownBy makes the sweep ask known, before it closes a request whose
// target this replica does not know, whether another live replica knows it
// (one whose discovery is ahead, or a fleet configured otherwise).
func (w *Workflow) KnownBy(known func(ctx context.Context) ([]string, error)) { w.known = known }

// Store is the request store (the alert watcher names the request that
// ended a query).
func (w *Workflow) Store() *request.Store { return w.store }

// Wait waits, at most d, for what the workflow runs in the background.
func (w *Workflow) Wait(d time.Duration) bool { return w.inflight.wait(d) }

func (w *Workflow) goWork(fn func(ctx context.Context)) {
	w.inflight.add()
	go func() {
		defer w.inflight.done()
		fn(w.work)
	}()
}

// Click is a button press (or the form it opened) as the workflow needs
// it: who, where, on which message, and how to answer them privately.
type Click struct {
	User        string `json:"u"`
	Channel     string `json:"c"`
	Thread      string `json:"t"` // the listing or alert a request threads under
	MessageTS   string `json:"m"` // the message the button was on
	ResponseURL string `json:"r"`
	Value       string `json:"v"` // the button's value
	TriggerID   string `json:"-"` // opens a form; Slack's expire in 3 s, so never kept
}

// Tell answers url's user privately.
func (w *Workflow) Tell(url, text string) {
	tell(w.out, url, text)
}

var tells struct {
	sync.Mutex
	n uint64
}

// tell answers url's user privately, through out.
func tell(out Outbox, url, text string) {
	if url == "" {
		return
	}
	tells.Lock()
	tells.n++
	key := fmt.Sprintf("tell|%d", tells.n)
	tells.Unlock()
	out.Put(outbox.Item{Key: key, URL: url, Msg: blocks.Notice(text)})
}

// Refuse tells user privately why they may not do what they asked, and
// records the refusal in the log (never the audit channel: a stranger
// pressing buttons must not be able to flood it).
func (w *Workflow) Refuse(url, user, channel, what string, targets []string, why string) {
	w.log.Info("audit", slog.String("event", AuditRefuse), slog.String("actor", user), slog.String("channel", channel),
		slog.String("asked", what), slog.Any("targets", targets), slog.String("why", why))
	w.metrics.Command("refused")
	w.Tell(url, ":no_entry: "+why)
}

func (w *Workflow) storeFailed(url, what string, err error) {
	w.log.Error("state store failed", slog.String("doing", what), slog.String("error", err.Error()))
	w.Tell(url, ":x: pgkill could not "+what+" (state store: "+blocks.Escape(err.Error())+"). Nothing was signalled; try again.")
}

// persist applies e to request id, trying again within the record budget
// while the store fails: it records what happened in Slack or in a
// database, which a failed write must not lose.
func (w *Workflow) persist(ctx context.Context, id string, e request.Event) (request.Request, error) {
	ctx, cancel := context.WithTimeout(ctx, w.recordBudget)
	defer cancel()
	got, err := w.store.Apply(ctx, id, e)
	for wait := 50 * time.Millisecond; err != nil && !request.Refused(err); wait = min(2*wait, 2*time.Second) {
		if sleep(ctx, wait) != nil {
			break
		}
		got, err = w.store.Apply(ctx, id, e)
	}
	return got, err
}

// may asks the policy whether c's user may act, in c's channel, on every
// one of targets, and refuses them (saying why) when not. It comes before
// anything else is said about what they pressed.
func (w *Workflow) may(ctx context.Context, c Click, act policy.Act, what string, targets []string) bool {
	for _, t := range targets {
		if d := w.policy.May(ctx, act, c.User, c.Channel, t); !d.Allowed {
			w.Refuse(c.ResponseURL, c.User, c.Channel, what, targets, d.Why)
			return false
		}
	}
	return true
}
