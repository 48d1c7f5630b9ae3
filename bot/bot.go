// Package bot is pgkill's Slack face: it reads Socket Mode envelopes,
// turns slash commands, buttons and forms into calls on the request
// workflow (bot/approval) and the listings, and serves /healthz, /readyz and
// /metrics. Every write to Slack goes through the outbox.
package bot

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/bot/alert"
	"github.com/pgkill/pgkill/bot/approval"
	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/discovery"
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/bot/lease"
	"github.com/pgkill/pgkill/bot/metrics"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/bot/request"
)

// Bot is the Slack face. Its handlers are plain methods: dispatch acks each
// envelope at once and runs them in their own goroutines.
type Bot struct {
	cfg     config.Config
	db      fleet.DB // query text shown as PGKILL_REDACT says
	slack   SlackAPI
	out     *outbox.Outbox
	flow    *approval.Workflow
	policy  *policy.Checker
	access  *access // user-group members, for policy
	metrics *metrics.Metrics
	health  *health
	log     *slog.Logger
	stored  bool // a state store keeps requests (else this process does)

	team, org string          // the workspace (and enterprise) the app token belongs to, from auth.test
	leases    *lease.Keeper   // nil: this replica polls every target
	discovery *discovery.Loop // nil without PGKILL_RDS_DISCOVER

	// work is the context for handlers: it outlives a SIGTERM long enough
	// for in-flight actions to finish (see Serve).
	work     context.Context
	inflight sync.WaitGroup
}

// New makes a bot over its parts; store may be nil (state in memory). The
// outbox it sends through runs in Serve.
func New(work context.Context, cfg config.Config, db fleet.DB, api SlackAPI, store Store, log *slog.Logger) *Bot {
	// Validate has refused a bad PGKILL_REDACT; were it unchecked, its error
	// leaves the default, which hides more.
	mode, _ := redact.ParseMode(cfg.Redact)
	db = fleet.Shown(db, mode.Show)
	m := metrics.New()
	b := &Bot{cfg: cfg, db: db, slack: api, metrics: m, log: log, work: work, stored: store != nil,
		health: &health{targets: map[string]targetHealth{}}}
	b.out = outbox.New(slackWriter{api: api, metrics: m}, outbox.Options{Log: log, Retried: m.SlackRetry})
	m.OutboxPending(b.out.Pending)
	b.access = &access{api: api, metrics: m, log: log, cache: map[string]cachedGroup{}}
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
	reasons, _ := policy.ParseReason(cfg.Reason) // checked by ValidateSlack; "" is optional
	requests, sets, pauses := request.Memory(), request.MemorySets(), autopilot.MemoryPauses()
	if store != nil {
		requests, sets, pauses = request.NewStore(store), request.StoredSets(store), autopilot.StoredPauses(store)
	}
	b.flow = approval.New(work, approval.Config{
		TTL: cfg.ApprovalTTL, VerifyTimeout: cfg.VerifyTimeout, Budget: cfg.SignalBudget(), Margin: cfg.SignalMargin(),
		SelfApproval: cfg.SelfApproval, BulkMax: cfg.BulkMax, Command: cfg.Command, AuditChannel: cfg.AuditChannel,
		Sweep: cfg.SweepInterval(),
	}, approval.Deps{Store: requests, Sets: sets, Fleet: db, Out: b.out, Policy: b.policy, Reasons: reasons, Pauses: pauses, Metrics: m, Log: log})
	return b
}

// Store is what a state store keeps for the bot (*pg.Store): requests,
// frozen sets, posted alerts and leases.
type Store interface {
	request.Records
	request.SetRecords
	alert.Store
	lease.Store
	autopilot.PauseRecords
}

// goWork runs fn in its own goroutine, counted so shutdown can wait for it.
func (b *Bot) goWork(fn func(ctx context.Context)) {
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		fn(b.work)
	}()
}

// wait waits for in-flight handlers (and the workflow's background work),
// at most d.
func (b *Bot) wait(d time.Duration) bool {
	done := make(chan struct{})
	go func() { b.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		return false
	}
	return b.flow.Wait(d)
}

// tell answers a user privately.
func (b *Bot) tell(url, text string) { b.flow.Tell(url, text) }

// refuse tells a user privately why not, and records the refusal.
func (b *Bot) refuse(url, user, channel, what string, targets []string, why string) {
	b.flow.Refuse(url, user, channel, what, targets, why)
}

// NewLogger makes the process logger: JSON (default) or text, at the
// configured level; every line, audit records included, names the replica.
func NewLogger(cfg config.Config, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(out, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(out, opts)
	}
	return slog.New(h).With(slog.String("replica", cfg.ReplicaName()))
}

// autopilotRules is the autopilot as the alert watcher sees it: the rules
// of the policy in force (SIGHUP reloads them), fired through the request
// workflow.
type autopilotRules struct{ b *Bot }

func (a autopilotRules) Rules() []autopilot.Rule { return a.b.policy.Policy().Autopilot }

func (a autopilotRules) Fire(ctx context.Context, fs []autopilot.Firing, channel string) {
	a.b.flow.Autopilot().Fire(ctx, fs, channel)
}
