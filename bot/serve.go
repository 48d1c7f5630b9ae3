package bot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
	"golang.org/x/sync/errgroup"

	"github.com/pgkill/pgkill/bot/alert"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/discovery"
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/bot/lease"
	"github.com/pgkill/pgkill/pg"
)

// outboxDrain bounds how long shutdown waits for queued Slack writes: with
// many targets alerting, the queue may hold more than Slack's pace lets out
// in any reasonable time. Alerts not posted are not recorded as posted (a
// restarted pgkill or another replica posts them).
const outboxDrain = 5 * time.Second

// recordWait bounds how long shutdown waits, after the outbox, for the
// records its answers start (a card's ts).
const recordWait = 15 * time.Second

// slackHTTPTimeout bounds every HTTP request to Slack.
const slackHTTPTimeout = 20 * time.Second

// ServeOption adds an optional part to Serve.
type ServeOption func(*Bot)

// WithDiscovery makes Serve run r's refreshes (PGKILL_RDS_DISCOVER) until
// it stops, and report them on /readyz and /metrics; targets that leave
// the fleet are forgotten there.
func WithDiscovery(r discovery.Refresher) ServeOption {
	return func(b *Bot) {
		b.discovery = discovery.New(r, b.metrics.Reg, func(ch pg.FleetChange) { b.metrics.Forget(ch.Removed) })
	}
}

// Serve runs the Slack bot until ctx ends (SIGINT/SIGTERM): then it stops
// taking events, lets in-flight actions finish (bounded), and returns nil.
// It returns an error only when Slack refuses the tokens or the listener
// cannot listen. store may be nil: requests and alerts then live in memory.
func Serve(ctx context.Context, cfg config.Config, db fleet.DB, store Store, logOut io.Writer, opts ...ServeOption) error {
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
	var l net.Listener
	if cfg.Listen != "" {
		if l, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("PGKILL_LISTEN %s: %w", cfg.Listen, err)
		}
	}
	if err := b.startLeases(ctx, store); err != nil {
		return err
	}
	if n := len(b.policy.Policy().Autopilot); n > 0 && cfg.AlertChannel == "" {
		log.Warn("autopilot rules are declared but PGKILL_ALERT_CHANNEL is not set: their countdown cards go there, so they never fire", slog.Int("rules", n))
	}
	if len(cfg.Channels) == 0 && cfg.PolicyFile == "" {
		log.Warn("PGKILL_CHANNELS is empty: /pgkill answers in any channel and direct message of the workspace; set it to the incident channels")
	}
	log.Info("pgkill starting", slog.Any("targets", db.Names()), slog.String("command", cfg.Command),
		slog.String("api_url", cfg.APIURL), slog.Bool("state_store", store != nil))

	// The outbox outlives ctx by outboxDrain: what was queued before SIGTERM
	// still goes out if Slack takes it in time.
	octx, cancelOut := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOut()
	outDone := make(chan struct{})
	go func() { defer close(outDone); b.out.Run(octx) }()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := client.RunContext(gctx)
		if err == nil || errors.Is(err, context.Canceled) {
			return nil
		}
		return fmt.Errorf("slack socket mode: %w", err)
	})
	g.Go(func() error { return b.listen(gctx, client) })
	g.Go(func() error { b.reloadOnHUP(gctx); return nil })
	g.Go(func() error { b.flow.Sweep(gctx); return nil }) // expiry, abandoned approvals
	if b.discovery != nil {
		g.Go(func() error { b.discovery.Run(gctx); return nil })
	}
	if b.leases != nil && cfg.AlertChannel == "" { // a heartbeat: which targets this replica knows
		g.Go(func() error { b.leases.Run(gctx, nil); return nil })
	}
	if cfg.AlertChannel != "" {
		w := b.watcher(store)
		g.Go(func() error { return w.Run(gctx) })
		log.Info("alerts on", slog.String("channel", cfg.AlertChannel), slog.Duration("after", cfg.AlertAfter),
			slog.Duration("idle_tx_after", cfg.IdleTxAlertAfter), slog.Duration("poll_interval", cfg.PollInterval))
	}
	if l != nil {
		b.serveHTTP(g, gctx, l)
	}
	err = g.Wait()

	log.Info("stopping: waiting for in-flight actions", slog.Duration("grace", cfg.ShutdownGrace()))
	if !b.wait(cfg.ShutdownGrace()) {
		log.Warn("in-flight actions did not finish in time")
	}
	// What the handlers queued goes out; what Slack's answers start (a
	// card's record) finishes.
	dctx, cancel := context.WithTimeout(context.Background(), outboxDrain)
	if b.out.Flush(dctx) != nil {
		log.Warn("alert messages not sent before shutdown", slog.Int("messages", b.out.Pending()))
	}
	cancel()
	b.flow.Wait(recordWait)
	cancelOut()
	<-outDone
	cancelWork()
	log.Info("pgkill stopped")
	return err
}

// startLeases joins the replicas sharing the state store, under a name no
// other live process uses: each replica says every round that it is alive
// and which targets it knows, and with alerts on, each target is polled by
// the one replica holding its lease.
func (b *Bot) startLeases(ctx context.Context, store Store) error {
	var storeUp func() float64
	if store != nil {
		b.leases = lease.New(store, b.cfg.ReplicaName(), b.cfg.PollInterval, b.db.Names, b.log)
		jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := b.leases.Join(jctx)
		cancel()
		if err != nil {
			return fmt.Errorf("PGKILL_REPLICA: %w; give each replica its own name, or leave PGKILL_REPLICA unset for one of its own", err)
		}
		b.flow.KnownBy(b.leases.Known)
		storeUp = func() float64 {
			if b.leases.Status().Err != nil {
				return 0
			}
			return 1
		}
		if b.cfg.AlertChannel != "" {
			b.log.Info("alert polling shared through leases in the state store", slog.Duration("lease_ttl", b.leases.TTL()), slog.Duration("renew_every", b.leases.Every()))
		}
	}
	b.metrics.Replica(b.cfg.ReplicaName(), storeUp)
	return nil
}

// watcher makes the alert watcher over the bot's parts.
func (b *Bot) watcher(store Store) *alert.Watcher {
	protect, _ := b.cfg.ProtectRules() // checked by Validate
	ignore, _ := b.cfg.AlertIgnoreRules()
	d := alert.Deps{DB: b.db, Out: b.out, Requests: b.flow.Store(), Sets: b.flow, Auto: autopilotRules{b}, Metrics: b.metrics, Log: b.log,
		Checked: func(target string, err error) { b.health.checked(target, err, time.Now()) }}
	if store != nil {
		d.Store = store
	}
	if b.leases != nil {
		d.Leases = b.leases
	}
	return alert.New(b.work, alert.Config{
		Channel: b.cfg.AlertChannel, After: b.cfg.AlertAfter, IdleTxAfter: b.cfg.IdleTxAlertAfter, PollInterval: b.cfg.PollInterval,
		MaxPerPoll: b.cfg.AlertMaxPerPoll, EditEvery: b.cfg.AlertEditEvery, QueryTimeout: b.cfg.QueryTimeout(),
		Protect: protect, Ignore: ignore,
	}, d)
}

// serveHTTP serves /healthz, /readyz and /metrics on l until ctx ends.
func (b *Bot) serveHTTP(g *errgroup.Group, ctx context.Context, l net.Listener) {
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second}
	b.log.Info("serving /healthz, /readyz and /metrics", slog.String("addr", l.Addr().String()))
	g.Go(func() error {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	if b.cfg.AlertChannel == "" { // the watcher's polls keep target health otherwise
		g.Go(func() error { b.checkTargets(ctx); return nil })
	}
}

// hello checks Slack's hello: several Socket Mode connections of this app
// without a state store are several replicas that each poll every target
// and keep requests to themselves — alerts twice, clicks on another
// replica's cards unknown.
func (b *Bot) hello(connections int) {
	b.log.Debug("hello from Slack", slog.Int("num_connections", connections))
	if connections > 1 && !b.stored {
		b.log.Warn("Slack reports several connections of this app and pgkill has no state store: each replica alerts on its own (twice, three times …) and knows only its own requests; set PGKILL_STATE_DSN on every replica", slog.Int("num_connections", connections))
	}
}

// reloadOnHUP reads the policy file again on SIGHUP, until ctx ends: the
// rules and the autopilot change without a restart, and nothing in flight
// is dropped. A file that does not parse leaves the policy in force, and
// the log says why, with its lines.
func (b *Bot) reloadOnHUP(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		p, err := b.cfg.Policy()
		if err != nil {
			b.log.Error("SIGHUP: the policy was not reloaded; the one in force stays", slog.String("error", err.Error()))
			continue
		}
		b.policy.Reload(p)
		b.log.Info("SIGHUP: policy reloaded", slog.Int("target_sections", len(p.Targets)), slog.Int("autopilot_rules", len(p.Autopilot)))
	}
}
