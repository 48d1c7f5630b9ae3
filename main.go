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

	"github.com/kelseyhightower/envconfig"

	"github.com/pgkill/pgkill/bot"
	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/pg"
	pgaws "github.com/pgkill/pgkill/pg/aws"
)

const usage = `pgkill finds long-running PostgreSQL queries and ends them safely.

usage:
  pgkill list [-target T] [-min 30s] [-db D] [-user U] [-app A] [-state active|idle-in-transaction|all] [-json]
  pgkill cancel    [-target T] [-yes] PID   end the running statement (the session survives)
  pgkill terminate [-target T] [-yes] PID   end the whole session (last resort)
  pgkill doctor [-target T]                 check privileges and timeout settings
  pgkill serve                              run the Slack bot (Socket Mode)
  pgkill manifest [-command /pgkill] [-name pgkill]   print the Slack app manifest (YAML)
  pgkill demo [-port N] [-v]                see it: the real bot, a PostgreSQL incident, Slack in a local page
  pgkill version
  pgkill help

Configuration comes from the environment: see README.md.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, bot.ErrFailed) {
			fmt.Fprintln(os.Stderr, "pgkill:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "help"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version":
		fmt.Fprintln(stdout, "pgkill", version())
		return nil
	case "manifest":
		return manifest(args, stdout, stderr)
	case "demo":
		return demo.Command(ctx, args, os.Getenv("DATABASE_URL"), stdin, stdout, stderr)
	case "list", "cancel", "terminate", "doctor", "serve":
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return bot.ErrFailed
	}

	var cfg bot.Config
	if err := envconfig.Process("", &cfg); err != nil {
		return err
	}
	specs, err := cfg.TargetSpecs()
	if err != nil {
		return err
	}
	// pgkill_auth=iam / pgkill_secret=… in a DSN: logins from AWS.
	specs, awsc, err := pgaws.Targets(ctx, specs)
	if err != nil {
		return fmt.Errorf("PGKILL_TARGETS: %w", err)
	}
	if cfg.RDSDiscover != "" && cfg.Targets == "" && cfg.DatabaseURL == "" {
		specs = nil // discovery alone: no "default" target from the libpq variables
	}
	if cmd == "serve" {
		err = cfg.ValidateSlack()
	} else {
		err = cfg.Validate()
	}
	if err != nil {
		return err
	}
	opts, err := cfg.PGOptions()
	if err != nil {
		return err
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
		var store bot.StateStore // nil: state in memory
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
		if discovery != nil {
			go discovery.Run(ctx) // ends with ctx; the bot may take it over for /readyz and metrics
		}
		return bot.Serve(ctx, cfg, fleet, store, stderr)
	}
	cli := &bot.CLI{PG: fleet, Cfg: cfg, In: stdin, Out: stdout, Err: stderr}
	switch cmd {
	case "list":
		return cli.List(ctx, args)
	case "cancel":
		return cli.Signal(ctx, pg.Cancel, args)
	case "terminate":
		return cli.Signal(ctx, pg.Terminate, args)
	default:
		return cli.Doctor(ctx, args)
	}
}

// manifest prints the Slack app manifest; it needs no configuration.
func manifest(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("manifest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	command := fs.String("command", "/pgkill", "the slash command")
	name := fs.String("name", "pgkill", "the app's name")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return bot.ErrFailed
	}
	if !strings.HasPrefix(*command, "/") || strings.ContainsAny(*command, " \t") {
		fmt.Fprintf(stderr, "manifest: -command must look like /pgkill, not %q\n", *command)
		return bot.ErrFailed
	}
	fmt.Fprint(stdout, bot.Manifest(*name, *command))
	return nil
}

func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v
}
