package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one pgkill command as help shows it.
type command struct {
	name     string
	synopsis string
	about    string
	flags    func() *flag.FlagSet // nil: no flags, or described in about
	env      []string
}

// Environment variables every command that reaches a database reads.
var targetEnv = []string{
	"PGKILL_TARGETS        name=DSN,name=DSN… (see README: a ',' or '@' in a password is written %2C, %40)",
	"DATABASE_URL          one target named default, when PGKILL_TARGETS is unset",
	"PG* (PGHOST, PGUSER…)  libpq's variables, when neither is set",
	"PGKILL_CONNECT_TIMEOUT how long a server may take to accept the TCP connection (default 5s); -wait bounds the rest",
	"PGKILL_PROTECT, PGKILL_PROTECTED_USERS, PGKILL_PROTECTED_APPS  sessions never offered or signalled",
}

// bulkAbout describes cancel|terminate with filters and no pid.
const bulkAbout = "With filters and no PID it acts on every session they select (at least -target, -db, -user, -app or -state is\nrequired): lists them, asks once, signals the whole set in one statement per target, each only if it still runs\nthe statement listed, verifies them together, and prints one line per session and the counts. A target that\ncannot be read stops it before anything is signalled; more than PGKILL_BULK_MAX sessions is refused."

var commands = []command{
	{
		name:     "list",
		synopsis: "pgkill list [-target T] [-min 1m] [-db P] [-user P] [-app P] [-state S] [-blocking] [-limit N] [-wide] [-watch [2s]] [-json] [-redact] [-wait 1m]",
		about: "Lists the long-running sessions of every target (or one): root blockers first, then longest first.\nA target that could not be read is named on stdout with the reason, and the exit code is 3.\n" +
			"In a lock pile-up (its deadlock checks hold the lock table) it lists every session at once without the blocking tree,\n" +
			"marking the likely root blocker, then lists again when the tree comes (with -json: a second document).",
		flags: func() *flag.FlagSet { return listFlags(&listArgs{}) },
		env:   append([]string{"PGKILL_MIN_DURATION   the default -min (default 1m)"}, targetEnv...),
	},
	{
		name:     "cancel",
		synopsis: "pgkill cancel [-target T] [-y] [-redact] [-wait 1m] PID...\n       pgkill cancel [-target T] [-min D] [-db P] [-user P] [-app P] [-state S] [-y] [-redact] [-wait 1m]",
		about:    "Ends the running statement of each PID (pg_cancel_backend); the session survives.\nShows each session and what it blocks, asks once, signals each only if it still runs the same statement,\nthen watches each for up to PGKILL_VERIFY_TIMEOUT and prints one line per PID.\n" + bulkAbout,
		flags:    func() *flag.FlagSet { return signalFlags("cancel", &signalArgs{}) },
		env:      append([]string{"PGKILL_VERIFY_TIMEOUT how long to watch a signalled session (default 10s)", "PGKILL_BULK_MAX       the most sessions one command without pids may signal (default 1000)", "PGKILL_MIN_DURATION   the default -min (default 1m)"}, targetEnv...),
	},
	{
		name:     "terminate",
		synopsis: "pgkill terminate [-target T] [-y] [-redact] [-wait 1m] PID...\n       pgkill terminate [-target T] [-min D] [-db P] [-user P] [-app P] [-state S] [-y] [-redact] [-wait 1m]",
		about:    "Ends each PID's whole session (pg_terminate_backend) and rolls back its open transaction: the last resort.\nShows each session, what it blocks and the transaction that will be rolled back, asks once, signals each only\nif it still runs the same statement, then watches each for up to PGKILL_VERIFY_TIMEOUT.\nA plain idle session (no statement, no transaction) is never terminated: there is nothing to end.\n" + bulkAbout,
		flags:    func() *flag.FlagSet { return signalFlags("terminate", &signalArgs{}) },
		env:      append([]string{"PGKILL_VERIFY_TIMEOUT how long to watch a signalled session (default 10s)", "PGKILL_BULK_MAX       the most sessions one command without pids may signal (default 1000)", "PGKILL_MIN_DURATION   the default -min (default 1m)"}, targetEnv...),
	},
	{
		name:     "doctor",
		synopsis: "pgkill doctor [-target T] [-wait 1m]",
		about:    "Checks what pgkill's role may do on each target (grants) and the timeout settings worth reviewing.\nExits 1 when a grant pgkill needs is missing, 3 when a target could not be read.",
		flags:    func() *flag.FlagSet { return doctorFlags(new(string), new(waitFlag)) },
		env:      targetEnv,
	},
	{
		name:     "autopilot",
		synopsis: "pgkill autopilot test [-target T] [-wait 1m]",
		about: "Evaluates the autopilot rules of PGKILL_POLICY_FILE against the live servers now, with the blocking tree, and prints\n" +
			"per rule what it would do and why. Signals nothing. Pauses and breakers live in the state store: /pgkill autopilot shows them.\n" +
			"Exits 1 when no rule is declared, 3 when a target could not be read.",
		flags: func() *flag.FlagSet { return autopilotFlags(new(string), new(waitFlag)) },
		env:   append([]string{"PGKILL_POLICY_FILE    the policy file with the autopilot: section (docs/autopilot.md)"}, targetEnv...),
	},
	{
		name:     "serve",
		synopsis: "pgkill serve",
		about:    "Runs the Slack bot (Socket Mode) until SIGTERM or SIGINT. No flags: every setting is an environment variable.",
		env: append([]string{
			"SLACK_APP_TOKEN, SLACK_BOT_TOKEN  the app-level (xapp-) and bot (xoxb-) tokens (required)",
			"PGKILL_APPROVERS      Slack user or group IDs who may approve (required)",
			"PGKILL_REQUESTERS, PGKILL_SELF_APPROVAL, PGKILL_APPROVAL_TTL, PGKILL_COMMAND, PGKILL_AUDIT_CHANNEL",
			"PGKILL_ALERT_CHANNEL, PGKILL_ALERT_AFTER, PGKILL_IDLE_TX_ALERT_AFTER, PGKILL_POLL_INTERVAL, PGKILL_ALERT_*",
			"PGKILL_STATE_DSN, PGKILL_REPLICA, PGKILL_LISTEN, PGKILL_LOG_FORMAT, PGKILL_LOG_LEVEL, PGKILL_MIN_DURATION, PGKILL_VERIFY_TIMEOUT",
		}, targetEnv...),
	},
	{
		name:     "manifest",
		synopsis: "pgkill manifest [-command /pgkill] [-name pgkill]",
		about:    "Prints the Slack app manifest (YAML) to paste into api.slack.com/apps. Needs no configuration.\n  -command string   the slash command (default \"/pgkill\")\n  -name string      the app's name (default \"pgkill\")",
	},
	{
		name:     "demo",
		synopsis: "pgkill demo [-port N] [-v]",
		about:    "See it before installing it: the real bot against a local Slack stand-in, a PostgreSQL incident (a throwaway cluster, or DATABASE_URL after asking), and the channel as Slack would show it on http://127.0.0.1:PORT. Ctrl-C stops everything and leaves nothing behind.\n  -port int   the page's port on 127.0.0.1 (0: a free one)\n  -v          log the bot's records",
		env:      []string{"DATABASE_URL  a scratch database to use instead of a throwaway cluster (asks before creating anything)"},
	},
	{
		name:     "version",
		synopsis: "pgkill version",
		about:    "Prints the module version and the VCS revision it was built from, when the build recorded them.",
	},
	{
		name:     "help",
		synopsis: "pgkill help [COMMAND]",
		about:    "Prints the list of commands, or one command's usage. `pgkill COMMAND -h` does the same.",
	},
}

func find(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// Known reports whether name is a pgkill command.
func Known(name string) bool {
	_, ok := find(name)
	return ok
}

func synopsis(name string) string {
	c, _ := find(name)
	return c.synopsis
}

// Usage prints the list of commands.
func Usage(w io.Writer) {
	fmt.Fprint(w, "pgkill finds long-running PostgreSQL queries and ends them safely.\n\nusage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\n", c.synopsis)
	}
	fmt.Fprint(w, "\nExit codes: 0 done, 1 error, 2 usage, 3 a target could not be read,\n"+
		"4 still running after the signal, 5 not confirmed or nothing signalled.\n"+
		"`pgkill COMMAND -h` shows a command's flags and the environment variables it reads; README.md has the rest.\n")
}

// CommandHelp prints one command's usage: arguments, flags and the
// environment variables it reads. It reports false for an unknown command.
func CommandHelp(w io.Writer, name string) bool {
	c, ok := find(name)
	if !ok {
		return false
	}
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis, c.about)
	if c.flags != nil {
		fmt.Fprint(w, "\nflags:\n")
		fs := c.flags()
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	if len(c.env) > 0 {
		fmt.Fprintf(w, "\nenvironment:\n  %s\n", strings.Join(c.env, "\n  "))
	}
	return true
}
