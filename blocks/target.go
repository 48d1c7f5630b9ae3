package blocks

import (
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/pg"
)

// targetName is a target as messages name it: bold, with its replication
// role (Aurora writer or reader, RDS replica) when it has one, so that a
// responder sees at once which side of a failover a query runs on.
func targetName(name, role string) string {
	if role == "" {
		return "*" + Escape(name) + "*"
	}
	return "*" + Escape(name) + "* (" + Escape(role) + ")"
}

// targetNames names targets, each with its role from roles (which may be
// nil).
func targetNames(ts []string, roles map[string]string) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = targetName(t, roles[t])
	}
	return strings.Join(parts, ", ")
}

// origin says where a target came from: PGKILL_TARGETS, or the discovery
// that found it.
func origin(s pg.TargetSpec) string {
	if s.Origin == "" {
		return "configured (PGKILL_TARGETS)"
	}
	return "discovered: " + Escape(s.Origin)
}

// Targets lists the targets, each with its role and where it came from, in
// the fleet's order.
func Targets(specs []pg.TargetSpec) Message {
	var names []string
	var sb strings.Builder
	sb.WriteString("Targets:")
	for _, s := range specs {
		n := s.Name
		if s.Role != "" {
			n += " (" + s.Role + ")"
		}
		names = append(names, n)
		fmt.Fprintf(&sb, "\n• %s · %s", targetName(s.Name, s.Role), origin(s))
	}
	if len(specs) == 0 {
		sb.WriteString(" none")
		names = []string{"none"}
	}
	return bound(Message{Text: Truncate("pgkill targets: "+strings.Join(names, ", "), 200), Blocks: []slack.Block{
		section("targets", Truncate(sb.String(), 2900)),
	}})
}

// login says how a target logs in and whether that worked, as far as the
// report can tell: a target that could not be reached says nothing about
// its login.
func login(r pg.Report) string {
	if r.Auth == "" {
		return ""
	}
	how := "login: " + Escape(r.Auth)
	switch {
	case r.Err == nil:
		how += " :white_check_mark: works"
	case errors.Is(r.Err, pg.ErrAuth):
		how += " :x: *refused*"
	default:
		how += " · not known to work: the server could not be reached"
	}
	return how + "\n"
}

// whereFrom names a reported target with its role and origin from specs;
// a target not in specs left the fleet while doctor ran.
func whereFrom(specs []pg.TargetSpec, name string) string {
	for _, s := range specs {
		if s.Name == name {
			return targetName(name, s.Role) + " · " + origin(s)
		}
	}
	return targetName(name, "") + " · no longer in the fleet"
}
