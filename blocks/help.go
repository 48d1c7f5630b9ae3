package blocks

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/pg"
)

// Usage is the one-line grammar of the slash command.
func Usage(command string) string {
	return fmt.Sprintf("%s [TARGET…] [DURATION] [db=NAME] [user=NAME] [app=NAME] [state=active|idle-in-transaction|all] [limit=N]  ·  %s help  ·  %s targets  ·  %s doctor [TARGET]  ·  %s autopilot [pause|resume [TARGET]]",
		command, command, command, command, command)
}

// UsageError tells the user what was wrong with their command, then how to
// write it.
func UsageError(command, problem string) Message {
	return Message{
		Text: "pgkill: " + Truncate(problem, 200),
		Blocks: []slack.Block{
			section("problem", ":warning: "+escapeTruncate(problem, 1000)),
			contextLine("usage", "Usage: "+Escape(Usage(command))),
		},
	}
}

// Help explains the command.
func Help(command string, targets []string, threshold time.Duration) Message {
	text := fmt.Sprintf("*%s* lists long-running PostgreSQL queries; *Cancel* and *Terminate* ask an approver before anything is signalled.\n"+
		"• `%s` — all targets, queries running ≥ %s\n"+
		"• `%s prod 30s user=etl` — one target, a shorter threshold, one user\n"+
		"• `%s state=idle-in-transaction limit=5` — the five oldest idle transactions\n"+
		"• `%s targets` — the configured databases · `%s doctor prod` — what pgkill may do there\n"+
		"• `%s autopilot` — the rules that act by themselves after a countdown anyone may stop · `%s autopilot pause prod` — stop them there (approvers)\n"+
		"Cancel ends the statement and keeps the session; Terminate closes the session (last resort). Targets: %s",
		Escape(command), Escape(command), Duration(threshold), Escape(command), Escape(command), Escape(command), Escape(command), Escape(command), Escape(command), targetList(targets))
	return Message{Text: "pgkill help", Blocks: []slack.Block{
		section("help", text),
		contextLine("usage", "Usage: "+Escape(Usage(command))),
	}}
}

// Doctor renders doctor reports, one section per target: how it logs in
// and whether that works, its role and origin, the grants pgkill lacks there
// and the settings to review. specs (the fleet's) give each target's role
// and origin.
func Doctor(reports []pg.Report, specs []pg.TargetSpec) Message {
	bs := []slack.Block{header("pgkill doctor")}
	for i, r := range reports {
		if len(bs) >= MaxBlocks {
			break
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "%s\n%s", whereFrom(specs, r.Target), login(r))
		if r.Err != nil {
			what := "cannot connect"
			if errors.Is(r.Err, pg.ErrAuth) {
				what = "login refused"
			}
			fmt.Fprintf(&sb, ":x: %s: %s", what, escapeTruncate(r.Err.Error(), 500))
			bs = append(bs, section(fmt.Sprintf("d%d", i), sb.String()))
			continue
		}
		fmt.Fprintf(&sb, "PostgreSQL %s · role %s\n", Escape(r.Version), inline(r.User))
		fmt.Fprintf(&sb, "superuser %s · rds_superuser %s · pg_signal_backend %s · pg_read_all_stats %s\n",
			yesNo(r.Superuser), yesNo(r.RDSSuperuser), yesNo(r.SignalBackend), yesNo(r.ReadAllStats))
		for _, m := range r.Missing {
			fmt.Fprintf(&sb, ":x: *missing*: %s\n", inline(m))
		}
		for _, p := range r.Problems {
			fmt.Fprintf(&sb, ":warning: %s\n", Escape(p))
		}
		for _, s := range r.Settings {
			fmt.Fprintf(&sb, "`%s = %s`", s.Name, Escape(s.Value))
			if s.Advice != "" {
				fmt.Fprintf(&sb, " — %s", Escape(s.Advice))
			}
			sb.WriteString("\n")
		}
		bs = append(bs, section(fmt.Sprintf("d%d", i), sb.String()))
	}
	return bound(Message{Text: "pgkill doctor", Blocks: bs})
}

func yesNo(b bool) string {
	if b {
		return ":white_check_mark:"
	}
	return ":x:"
}

// Notice is a short ephemeral answer ("only approvers may approve").
func Notice(text string) Message {
	return Message{Text: Truncate(stripMrkdwn(text), 200), Blocks: []slack.Block{section("notice", text)}}
}
