package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
	"golang.org/x/sync/errgroup"

	"github.com/pgkill/pgkill/bot/discovery"
	"github.com/pgkill/pgkill/bot/lease"
	"github.com/pgkill/pgkill/pg"
)

// shutdownGrace bounds how long in-flight actions may run after SIGTERM:
// long enough for a signal plus its verification.
func (c Config) shutdownGrace() time.Duration {
	return c.VerifyTimeout + c.ConnectTimeout + 10*time.Second
}

// alertDrain bounds how long shutdown waits for queued alert messages:
// with many targets alerting, the queue may hold more than Slack's pace
// lets out in any reasonable time. Alerts not posted are not recorded as
// posted (a restarted pgkill or another process posts them).
const alertDrain = 5 * time.Second

// slackHTTPTimeout bounds every HTTP request to Slack.
const slackHTTPTimeout = 20 * time.Second

// NewLogger makes the process logger: JSON (default) or text, at the
// configured level.
func NewLogger(cfg Config, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(out, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(out, opts)
	}
	// Every line, audit records included, names the replica that wrote it.
	return slog.New(h).With(slog.String("replica", cfg.ReplicaName()))
}

// replica is this replica's name (PGKILL_REPLICA, else the hostname).
func (b *Bot) replica() string { return b.cfg.ReplicaName() }

// hello checks Slack's hello: several Socket Mode connections of this app
// without a state store are several replicas that each poll every target
// and keep requests to themselves — alerts twice, clicks on another
// replica's cards unknown.
func (b *Bot) hello(connections int) {
	b.log.Debug("hello from Slack", slog.Int("num_connections", connections))
	if connections > 1 && b.store == nil {
		b.log.Warn("Slack reports several connections of this app and pgkill has no state store: each replica alerts on its own (twice, three times …) and knows only its own requests; set PGKILL_STATE_DSN on every replica", slog.Int("num_connections", connections))
	}
}

// ServeOption adds an optional part to Serve.
type ServeOption func(*Bot)

// WithDiscovery makes Serve run r's refreshes (PGKILL_RDS_DISCOVER) until
// it stops, and report them on /readyz and /metrics; targets that leave
// the fleet are forgotten there.
func WithDiscovery(r discovery.Refresher) ServeOption {
	return func(b *Bot) {
		b.discovery = discovery.New(r, b.metrics.reg, func(ch pg.FleetChange) { b.metrics.forget(ch.Removed) })
	}
}

// Serve runs the Slack bot until ctx ends (SIGINT/SIGTERM): then it stops
// taking events, lets in-flight actions finish (bounded), and returns nil.
// It returns an error only when Slack refuses the tokens. store may be nil:
// requests and alerts then live in memory.
func Serve(ctx context.Context, cfg Config, db Postgres, store StateStore, logOut io.Writer, opts ...ServeOption) error {
	log := NewLogger(cfg, logOut)
	// slack-go's default HTTP client has no timeout: a hung Slack would hold
	// whatever waits on it.
	api := slack.New(cfg.BotToken, slack.OptionAppLevelToken(cfg.AppToken), slack.OptionAPIURL(cfg.APIURL),
		slack.OptionHTTPClient(&http.Client{Timeout: slackHTTPTimeout}))
	client := socketmode.New(api)

	// Handlers get a context that survives ctx by the grace period.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	b := New(work, cfg, db, api, store, log)
	for _, o := range opts {
		o(b)
	}
	// Payloads from any other workspace (a shared channel of another
	// organisation) are refused: the token says which one is ours.
	actx, cancelAuth := context.WithTimeout(ctx, 30*time.Second)
	who, err := api.AuthTestContext(actx)
	cancelAuth()
	if err != nil {
		return fmt.Errorf("slack auth.test (SLACK_BOT_TOKEN): %w", err)
	}
	b.team, b.org = who.TeamID, who.EnterpriseID
	// A store that keeps leases (pg.Store) shares the alert polling among
	// the replicas: each target is polled by the one replica holding its lease.
	var storeUp func() float64
	if ls, ok := store.(lease.Store); ok && cfg.AlertChannel != "" {
		b.leases = lease.New(ls, cfg.ReplicaName(), cfg.PollInterval, b.targets, log)
		storeUp = func() float64 {
			if b.leases.Status().Err != nil {
				return 0
			}
			return 1
		}
		log.Info("alert polling shared through leases in the state store", slog.Duration("lease_ttl", b.leases.TTL()), slog.Duration("renew_every", b.leases.Every()))
	}
	b.metrics.replica(cfg.ReplicaName(), storeUp)
	if len(cfg.Channels) == 0 && cfg.PolicyFile == "" {
		log.Warn("PGKILL_CHANNELS is empty: /pgkill answers in any channel and direct message of the workspace; set it to the incident channels")
	}
	log.Info("pgkill starting", slog.Any("targets", db.Names()), slog.String("command", cfg.Command),
		slog.String("api_url", cfg.APIURL), slog.Bool("state_store", store != nil))

	var l net.Listener
	if cfg.Listen != "" {
		var err error
		if l, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("PGKILL_LISTEN %s: %w", cfg.Listen, err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := client.RunContext(gctx)
		if err == nil || errors.Is(err, context.Canceled) {
			return nil
		}
		return fmt.Errorf("slack socket mode: %w", err)
	})
	g.Go(func() error { return b.listen(gctx, client) })
	g.Go(func() error { b.sweep(gctx); return nil }) // expiry, abandoned approvals
	if b.discovery != nil {
		g.Go(func() error { b.discovery.Run(gctx); return nil })
	}
	// The alert outbox outlives ctx by alertDrain: alerts queued before
	// SIGTERM still go out if Slack takes them in time.
	out := newAlertOutbox(b)
	octx, cancelOut := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOut()
	outDone := make(chan struct{})
	if cfg.AlertChannel != "" {
		b.metrics.outboxPending(out.Pending)
		go func() { defer close(outDone); out.Run(octx) }()
		w := newWatcher(b, out)
		g.Go(func() error { return w.run(gctx) })
		log.Info("alerts on", slog.String("channel", cfg.AlertChannel), slog.Duration("after", cfg.AlertAfter),
			slog.Duration("idle_tx_after", cfg.IdleTxAlertAfter), slog.Duration("poll_interval", cfg.PollInterval))
	} else {
		close(outDone)
	}
	if l != nil {
		srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second}
		log.Info("serving /healthz, /readyz and /metrics", slog.String("addr", l.Addr().String()))
		g.Go(func() error {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
		if cfg.AlertChannel == "" { // the watcher's polls keep target health otherwise
			g.Go(func() error { b.checkTargets(gctx); return nil })
		}
	}
	err = g.Wait()

	log.Info("stopping: waiting for in-flight actions", slog.Duration("grace", cfg.shutdownGrace()))
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		dctx, cancel := context.WithTimeout(context.Background(), alertDrain)
		defer cancel()
		if out.Flush(dctx) != nil {
			log.Warn("alert messages not sent before shutdown", slog.Int("messages", out.Pending()))
		}
		cancelOut()
		<-outDone
	}()
	if !b.wait(cfg.shutdownGrace()) {
		log.Warn("in-flight actions did not finish in time")
	}
	<-drained
	cancelWork()
	log.Info("pgkill stopped")
	return err
}
