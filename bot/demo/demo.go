package demo

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgkill/pgkill/bot"
	"github.com/pgkill/pgkill/bot/cli"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/localslack"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/cluster"
)

// The people and channels of the demo workspace.
const (
	Requester = "U0REQ"
	Approver  = "U0APPROVER"
	Outsider  = "U0OUTSIDER"

	ChannelIncident = "C0INCIDENT"
	ChannelAlerts   = "C0DBALERTS"
	ChannelAudit    = "C0AUDIT"
)

// People are who the page lets you be: the policy below gives each a role.
var People = []Person{
	{ID: Requester, Name: "Riley", Role: "requester"},
	{ID: Approver, Name: "Alex", Role: "approver"},
	{ID: Outsider, Name: "Oscar", Role: "outsider"},
}

// Channels are the demo workspace's channels, incident channel first.
var Channels = []Channel{
	{ID: ChannelIncident, Name: "incident", Hint: "Nothing here yet. As Riley, type /pgkill below to list the long-running queries."},
	{ID: ChannelAlerts, Name: "db-alerts", Hint: "pgkill posts alerts here when a query has run for 20 s."},
	{ID: ChannelAudit, Name: "pgkill-audit", Hint: "Every request, decision and outcome is recorded here."},
}

// ErrDeclined: the person did not confirm using their database.
var ErrDeclined = errors.New("not confirmed: nothing was created")

// Options configure a demo.
type Options struct {
	// DatabaseURL is a scratch database to play the incident on; "" starts
	// a throwaway cluster.
	DatabaseURL string
	Port        int       // of the page on 127.0.0.1; 0 picks a free one
	In          io.Reader // answers the y/N question about DatabaseURL
	Out         io.Writer // the question and the page's address
	Log         io.Writer // the bot's log
	LogLevel    string    // "warn" when empty
}

// Demo is a running demo. Stop ends it and removes what it made.
type Demo struct {
	URL string // the page
	// ClusterDir holds the throwaway cluster ("" with DatabaseURL); Stop
	// removes it.
	ClusterDir string
	Incident   *Incident
	Slack      *localslack.Server
	cleanups   []func() error // run in reverse
}

// Config is the bot's configuration in the demo, against slack: the policy
// gives each person their role (the outsider may not even look), alerts
// fire after 20 s so that the incident shows up in #db-alerts within a
// minute.
func Config(slack *localslack.Server) config.Config {
	return config.Config{
		AppToken: slack.AppToken(), BotToken: slack.BotToken(), APIURL: slack.APIURL(),
		Approvers: []string{Approver}, Requesters: []string{Requester, Approver}, Viewers: []string{Requester, Approver},
		Channels: []string{ChannelIncident, ChannelAlerts}, AuditChannel: ChannelAudit,
		ApprovalTTL: 15 * time.Minute, Command: "/pgkill", MinDuration: 5 * time.Second,
		VerifyTimeout: 10 * time.Second, ConnectTimeout: 5 * time.Second, Protect: "user=rdsadmin",
		AlertChannel: ChannelAlerts, AlertAfter: 20 * time.Second, IdleTxAlertAfter: 20 * time.Second,
		PollInterval: 5 * time.Second, AlertMaxPerPoll: 5, AlertEditEvery: 15 * time.Second,
		LogFormat: "text", LogLevel: "warn",
		// The page draws Slack's modals: Terminate and bulk requests ask
		// for a reason that will do, Cancel asks for one it may go without.
		Reason: "terminate,bulk", Redact: "literals", BulkMax: 1000,
	}
}

// Autopilot is the demo's policy file: one rule that acts (it cancels the
// search API's runaway copies after a 30-second countdown anyone may stop)
// and one in dry run (it would terminate the idle transaction that blocks
// the billing API).
const Autopilot = `autopilot:
  - name: search-runaways
    match: {app: search-api, state: active, duration: 30s}
    action: cancel
    countdown: 30s
    mode: act
  - name: idle-blockers
    match: {state: idle in transaction, duration: 1m, blocking: 2}
    action: terminate
    countdown: 1m
`

// Start starts the database (or asks to use DatabaseURL), the incident, the
// local Slack, the real bot and the page, and returns once the page answers.
// On error everything already started is stopped.
func Start(ctx context.Context, opts Options) (d *Demo, err error) {
	d = &Demo{}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Stop())
			d = nil
		}
	}()
	dsn, roles, err := d.database(opts)
	if err != nil {
		return d, err
	}
	if d.Incident, err = Play(ctx, dsn, roles); err != nil {
		return d, err
	}
	d.cleanups = append(d.cleanups, d.Incident.Stop)
	// Its tokens are the run's own: no page of another site can know them.
	if d.Slack, err = localslack.Start(localslack.Options{}); err != nil {
		return d, err
	}
	d.cleanups = append(d.cleanups, func() error { d.Slack.Close(); return nil })
	cfg := Config(d.Slack)
	if cfg.PolicyFile, err = d.policyFile(); err != nil {
		return d, err
	}
	if opts.LogLevel != "" {
		cfg.LogLevel = opts.LogLevel
	}
	if err := d.serve(cfg, dsn, opts.Log); err != nil {
		return d, err
	}
	// Until the incident's queries have run MinDuration, /pgkill would list
	// none of them: the page says the incident is starting.
	page := NewPage(d.Slack, cfg.Command, People, Channels, d.Incident.InPlace.Add(cfg.MinDuration))
	return d, d.listen(opts.Port, page.Handler())
}

// database returns the DSN to play on and whether the demo may create
// roles there (only on its own cluster).
func (d *Demo) database(opts Options) (string, bool, error) {
	if opts.DatabaseURL != "" {
		fmt.Fprintf(opts.Out, "pgkill demo will use DATABASE_URL (%s): it creates the tables pgkill_demo_orders, "+
			"pgkill_demo_customers and pgkill_demo_accounts (replacing any an earlier demo left), runs slow queries "+
			"and holds locks on them, and drops them when it stops.\nUse a scratch database only. Continue? [y/N] ",
			pg.Redact(opts.DatabaseURL))
		line, _ := bufio.NewReader(opts.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return "", false, ErrDeclined
		}
		return opts.DatabaseURL, false, nil
	}
	c, err := cluster.Start(cluster.Options{})
	if err != nil {
		if errors.Is(err, cluster.ErrNoServer) {
			return "", false, fmt.Errorf("%w; or set DATABASE_URL to a scratch database", err)
		}
		return "", false, fmt.Errorf("start a throwaway PostgreSQL: %w", err)
	}
	d.cleanups = append(d.cleanups, c.Stop)
	d.ClusterDir = c.Dir()
	return c.DSN, true, nil
}

// policyFile writes Autopilot to a file of its own, removed at Stop.
func (d *Demo) policyFile() (string, error) {
	dir, err := os.MkdirTemp("", "pgkill-demo-policy-")
	if err != nil {
		return "", fmt.Errorf("the demo's policy file: %w", err)
	}
	d.cleanups = append(d.cleanups, func() error { return os.RemoveAll(dir) })
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(Autopilot), 0o600); err != nil {
		return "", fmt.Errorf("the demo's policy file: %w", err)
	}
	return path, nil
}

// serve runs the real bot, as `pgkill serve` does, until Stop.
func (d *Demo) serve(cfg config.Config, dsn string, log io.Writer) error {
	if err := cfg.ValidateSlack(); err != nil {
		return err
	}
	pgOpts, err := cfg.PGOptions()
	if err != nil {
		return err
	}
	fleet, err := pg.NewFleet([]pg.TargetSpec{{Name: "demo", DSN: dsn}}, pgOpts)
	if err != nil {
		return err
	}
	d.cleanups = append(d.cleanups, func() error { fleet.Close(); return nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bot.Serve(ctx, cfg, fleet, nil, log) }()
	d.cleanups = append(d.cleanups, func() error {
		cancel()
		return <-done // Serve bounds its own shutdown
	})
	deadline := time.After(30 * time.Second)
	for {
		changed := d.Slack.Changed()
		if d.Slack.Connected() {
			return nil
		}
		select {
		case <-changed:
		case err := <-done:
			done <- err // for the cleanup
			return fmt.Errorf("the bot stopped before connecting: %w", err)
		case <-deadline:
			return errors.New("the bot did not connect to the local Slack within 30s")
		}
	}
}

// listen serves the page on loopback.
func (d *Demo) listen(port int, h http.Handler) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("the page: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }() // ErrServerClosed at Stop
	// Close, not Shutdown: the event streams never end by themselves.
	d.cleanups = append(d.cleanups, srv.Close)
	d.URL = fmt.Sprintf("http://%s/", l.Addr())
	return nil
}

// Stop stops everything Start started, in reverse order, and removes the
// cluster (or the tables in DatabaseURL).
func (d *Demo) Stop() error {
	var errs []error
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		errs = append(errs, d.cleanups[i]())
	}
	d.cleanups = nil
	return errors.Join(errs...)
}

// Command is `pgkill demo`: it runs the demo until ctx ends (Ctrl-C).
func Command(ctx context.Context, args []string, databaseURL string, in io.Reader, out, errOut io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(errOut)
	port := fs.Int("port", 0, "the page's port on 127.0.0.1 (0: a free one)")
	verbose := fs.Bool("v", false, "log the bot's info lines too")
	if err := fs.Parse(args); err != nil {
		return &cli.Exit{Code: cli.ExitUsage}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(errOut, "demo takes no arguments, not %q\n", fs.Args())
		return &cli.Exit{Code: cli.ExitUsage}
	}
	opts := Options{DatabaseURL: databaseURL, Port: *port, In: in, Out: out, Log: errOut}
	if *verbose {
		opts.LogLevel = "info"
	}
	began := time.Now()
	d, err := Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	where := "PostgreSQL: DATABASE_URL (the demo's tables are dropped on exit)"
	if d.ClusterDir != "" {
		where = "PostgreSQL: a throwaway cluster in " + d.ClusterDir + " (removed on exit)"
	}
	fmt.Fprintf(out, `pgkill demo is ready (%.1fs): open %s
  %s
  PostgreSQL plays an incident: a runaway report, an idle transaction holding a lock with three updates queued
  behind it, a worker that ignores cancels, three copies of one slow search, and a query with a secret in it.
  Be Riley (requester): type /pgkill in #incident, press Cancel or Terminate and say why; then be Alex (approver) and approve.
  Alerts arrive in #db-alerts after 20 s. Ctrl-C stops everything and removes it.
`, time.Since(began).Seconds(), d.URL, where)
	<-ctx.Done()
	fmt.Fprintln(out, "pgkill demo: stopping")
	if err := d.Stop(); err != nil {
		return fmt.Errorf("demo: stopping: %w", err)
	}
	fmt.Fprintln(out, "pgkill demo: stopped; nothing left behind")
	return nil
}
