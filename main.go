// Command pgkill finds long-running PostgreSQL queries and ends them safely:
// from Slack (serve) or from a terminal (list, cancel, terminate, doctor).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/pgkill/pgkill/bot"
	"github.com/pgkill/pgkill/bot/cli"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/bot/lease"
	"github.com/pgkill/pgkill/pg"
	pgaws "github.com/pgkill/pgkill/pg/aws"
)

// pg.Fleet is what Slack and the command line reach PostgreSQL through;
// pg.Store keeps the leases that share alert polling among replicas.
var (
	_ fleet.DB    = (*pg.Fleet)(nil)
	_ lease.Store = (*pg.Store)(nil)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	var exit *cli.Exit
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "pgkill:", pg.Redact(err.Error()))
	}
	os.Exit(cli.Code(err))
}

// run runs one command. It returns nil, a *cli.Exit (already explained to
// the user) or an error for main to print; cli.Code gives the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "help"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch {
	case cmd == "-h" || cmd == "-help" || cmd == "--help":
		cmd = "help"
	case cmd == "-version" || cmd == "--version":
		cmd = "version"
	case !cli.Known(cmd):
		fmt.Fprintf(stderr, "pgkill: unknown command %q (pgkill help lists them)\n\n", cmd)
		cli.Usage(stderr)
		return &cli.Exit{Code: cli.ExitUsage}
	case cmd != "help" && cli.Help(args):
		cli.CommandHelp(stdout, cmd)
		return nil
	}
	switch cmd {
	case "help":
		return help(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version())
		return nil
	case "manifest":
		return manifest(args, stdout, stderr)
	case "demo":
		return demo.Command(ctx, args, os.Getenv("DATABASE_URL"), stdin, stdout, stderr)
	}

	if cmd == "serve" && len(args) > 0 {
		fmt.Fprintf(stderr, "serve: unexpected argument %q: serve takes no flags, its settings are environment variables (pgkill serve -h)\n", cli.Visible(args[0]))
		return &cli.Exit{Code: cli.ExitUsage}
	}
	cfg, specs, err := loadConfig(cmd == "serve")
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "pgkill:", line)
		}
		return &cli.Exit{Code: cli.ExitError}
	}
	// pgkill_auth=iam / pgkill_secret=… in a DSN: logins from AWS.
	specs, awsc, err := pgaws.Targets(ctx, specs)
	if err != nil {
		return fmt.Errorf("PGKILL_TARGETS: %w", err)
	}
	if cfg.RDSDiscover != "" && cfg.Targets == "" && cfg.DatabaseURL == "" {
		specs = nil // discovery alone: no "default" target from the libpq variables
	}
	opts, err := cfg.PGOptions()
	if err != nil {
		return err
	}
	if cmd != "serve" {
		opts.Waiting = cli.ShowWait(stderr) // a progress line while a server is slow to connect
	}
	fleet, err := pg.NewFleet(specs, opts)
	if err != nil {
		return err
	}
	defer fleet.Close()
	// PGKILL_RDS_DISCOVER: the RDS/Aurora instances join the fleet now.
	var discoveryLog *slog.Logger // the CLI says what fails in its errors
	if cmd == "serve" {
		discoveryLog = bot.NewLogger(cfg, stderr)
	}
	discovery, err := pgaws.Start(ctx, cfg.RDSDiscover, awsc, specs, fleet, discoveryLog)
	if err != nil {
		return err
	}

	if cmd == "serve" {
		var opts []bot.ServeOption
		if discovery != nil { // Serve runs its refreshes and reports them
			opts = append(opts, bot.WithDiscovery(discovery))
		}
		return serve(ctx, cfg, fleet, stderr, opts...)
	}
	c := &cli.CLI{DB: fleet, In: stdin, Out: stdout, Err: stderr, Opts: cli.Options{
		MinDuration:   cfg.MinDuration,
		VerifyTimeout: cfg.VerifyTimeout,
		BulkMax:       cfg.BulkMax,
		TargetsFrom:   targetsFrom(cfg),
		Unconfigured:  targetsFrom(cfg) == "",
		Terminal:      terminal(stdout),
		Width:         cli.Width(os.Getenv("COLUMNS"), stdout),
	}}
	if cmd == "autopilot" {
		p, err := cfg.Policy() // its errors name the variable and the line
		if err != nil {
			return err
		}
		c.Opts.Rules = p.Autopilot
		return c.Autopilot(ctx, args)
	}
	switch cmd {
	case "list":
		return c.List(ctx, args)
	case "cancel":
		return c.Signal(ctx, pg.Cancel, args)
	case "terminate":
		return c.Signal(ctx, pg.Terminate, args)
	default:
		return c.Doctor(ctx, args)
	}
}

// loadConfig reads and checks every setting the command needs and reports
// every problem at once, one line each, naming its variable.
func loadConfig(serve bool) (config.Config, []pg.TargetSpec, error) {
	cfg, loadErr := config.Load()
	specs, targetsErr := cfg.TargetSpecs()
	check := cfg.Validate
	if serve {
		check = cfg.ValidateSlack
	}
	return cfg, specs, config.Errors(loadErr, targetsErr, check())
}

func serve(ctx context.Context, cfg config.Config, fleet *pg.Fleet, stderr io.Writer, opts ...bot.ServeOption) error {
	var store bot.Store // nil: state in memory
	if cfg.StateDSN != "" {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		s, err := pg.OpenStore(sctx, cfg.StateDSN)
		cancel()
		if err != nil {
			return fmt.Errorf("PGKILL_STATE_DSN: %w", err)
		}
		defer s.Close()
		store = s
	}
	return bot.Serve(ctx, cfg, fleet, store, stderr, opts...)
}

// help prints the command list, or one command's usage.
func help(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		cli.Usage(stdout)
		return nil
	}
	if !cli.CommandHelp(stdout, args[0]) {
		fmt.Fprintf(stderr, "pgkill help: unknown command %q\n\n", args[0])
		cli.Usage(stderr)
		return &cli.Exit{Code: cli.ExitUsage}
	}
	return nil
}

// targetsFrom says where the configured targets come from, "" when
// nothing is configured.
func targetsFrom(cfg config.Config) string {
	switch {
	case cfg.Targets != "":
		return "PGKILL_TARGETS"
	case cfg.DatabaseURL != "":
		return "DATABASE_URL"
	case libpqEnv():
		return "the libpq PG* variables"
	}
	return ""
}

// libpqEnv reports whether any libpq PG* variable is set: then an empty DSN
// is a configuration, not the lack of one.
func libpqEnv() bool {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "PGKILL_") {
			return true
		}
	}
	return false
}

// terminal reports whether w is a terminal (a character device).
func terminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// manifest prints the Slack app manifest; it needs no configuration.
func manifest(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("manifest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	command := fs.String("command", "/pgkill", "the slash command")
	name := fs.String("name", "pgkill", "the app's name")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return &cli.Exit{Code: cli.ExitUsage}
	}
	if !strings.HasPrefix(*command, "/") || strings.ContainsAny(*command, " \t") {
		fmt.Fprintf(stderr, "manifest: -command must look like /pgkill, not %q\n", cli.Visible(*command))
		return &cli.Exit{Code: cli.ExitUsage}
	}
	fmt.Fprint(stdout, bot.Manifest(*name, *command))
	return nil
}

// version says which build this is: the module version and, when the
// build recorded them (go build in a git clone, -buildvcs=auto), the
// revision, its time and whether the tree had local changes. Without them it
// says so rather than invent a version.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "pgkill: no build information recorded"
	}
	v := "pgkill " + info.Main.Version
	var rev, at, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return v + " (" + info.GoVersion + "; built without version control information: the source revision is unknown)"
	}
	v += " (revision " + rev
	if at != "" {
		v += ", committed " + at
	}
	if modified == "true" {
		v += ", with uncommitted changes"
	}
	return v + "; " + info.GoVersion + ")"
}
