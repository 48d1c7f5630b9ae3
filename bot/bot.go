package bot

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/bot/discovery"
	"github.com/pgkill/pgkill/bot/lease"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/redact"
)

// Bot is the Slack face of pgkill. Its handlers are plain methods: the
// socket loop (socket.go) acks each envelope at once and calls them in their
// own goroutines.
type Bot struct {
	cfg      Config
	db       Postgres
	slack    SlackAPI
	log      *slog.Logger
	access   *access         // user-group members, for policy
	policy   *policy.Checker // who may see and act where
	reasons  policy.Reasons  // when a requester is asked why
	team     string          // the workspace (and enterprise) the app token belongs to, from auth.test
	org      string
	requests requests
	sets     sets          // the sets listings matched, for Cancel all / Terminate all
	store    StateStore    // nil: state lives in memory
	leases   *lease.Keeper // nil: this replica polls every target (serve.go)
	metrics  *metrics
	health   *health
	// discovery refreshes a discovered fleet (nil without
	// PGKILL_RDS_DISCOVER); see WithDiscovery.
	discovery *discovery.Loop
	now       func() time.Time

	// work is the context for handlers: it outlives a SIGTERM long enough
	// for in-flight actions to finish (see Serve).
	work     context.Context
	inflight sync.WaitGroup

	cardLocks [64]sync.Mutex // one card's updates run one at a time (refreshCard)
	auditMu   sync.Mutex
	auditTail chan struct{} // closed when the last audit line queued is posted
}

// New makes a bot. work bounds every handler's lifetime; store may be nil
// (state in memory).
func New(work context.Context, cfg Config, db Postgres, api SlackAPI, store StateStore, log *slog.Logger) *Bot {
	// Validate has refused a bad PGKILL_REDACT; were it unchecked, its error
	// leaves the default, which hides more.
	mode, _ := redact.ParseMode(cfg.Redact)
	db = Redacted(inFleet{db}, mode)
	b := &Bot{cfg: cfg, db: db, slack: api, log: log, metrics: newMetrics(),
		health: &health{targets: map[string]targetHealth{}}, now: time.Now, work: work}
	b.requests, b.sets = newMemRequests(), &memSets{}
	if store != nil {
		b.store = store
		b.requests = &storedRequests{store: store, now: b.now}
		b.sets = storedSets{store: store}
	}
	b.access = &access{bot: b, cache: map[string]cachedGroup{}}
	p, err := cfg.Policy()
	if err != nil { // Validate reports it first; never act on a policy that could not be read
		log.Error("policy could not be read: nothing is allowed", slog.String("error", err.Error()))
		p = &policy.Policy{Default: policy.Rules{Channels: []string{"C0NOWHERE"}, Viewers: []string{"U0NOBODY"}, Approvers: []string{"U0NOBODY"}}}
	}
	var clicks []string
	if cfg.AlertChannel != "" {
		clicks = append(clicks, cfg.AlertChannel)
	}
	b.policy = policy.NewChecker(p, b.access.groupMembers, clicks...)
	b.reasons, _ = policy.ParseReason(cfg.Reason) // checked by ValidateSlack; "" is optional
	return b
}

// goWork runs fn in its own goroutine, counted so shutdown can wait for it.
func (b *Bot) goWork(fn func(ctx context.Context)) {
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		fn(b.work)
	}()
}

// wait waits for in-flight handlers, at most d.
func (b *Bot) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { b.inflight.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (b *Bot) targets() []string { return b.db.Names() }

// queryTimeout bounds a listing: the per-target timeouts come first.
func (b *Bot) queryTimeout() time.Duration { return b.cfg.ConnectTimeout + 15*time.Second }
