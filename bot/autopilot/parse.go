package autopilot

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
)

// Parse reads the policy file's autopilot: section, a list of rules:
//
//	autopilot:
//	  - name: idle-blockers            # required, unique
//	    targets: [prod, orders-*]      # names or patterns; default every target
//	    match:                         # every condition given must hold
//	      user: etl*                   # patterns: user, app, database
//	      state: idle in transaction   # active | idle in transaction
//	      duration: 10m                # running (or idle) at least this long
//	      transaction_age: 15m
//	      blocking: 5                  # a root blocker with at least 5 waiting
//	      waiting: 2m                  # waiting on a lock at least this long
//	    action: terminate              # cancel | terminate | cancel-then-terminate
//	    escalate_after: 30s            # cancel-then-terminate: terminate what still runs then
//	    countdown: 60s                 # between the card and the signal; default 60s
//	    mode: dry-run                  # dry-run (the default) | act
//	    limit: 5 per 1h                # the breaker; default 3 per 1h
//
// Every problem is reported through bad, with its line.
func Parse(n *yaml.Node, bad func(*yaml.Node, string, ...any)) []Rule {
	if n.Kind != yaml.SequenceNode {
		bad(n, "autopilot: is a list of rules (- name: …)")
		return nil
	}
	var out []Rule
	names := map[string]int{}
	for _, item := range n.Content {
		r, ok := parseRule(item, bad)
		if !ok {
			continue
		}
		if line, dup := names[r.Name]; dup {
			bad(item, "rule %q is declared twice (first at line %d)", r.Name, line)
			continue
		}
		names[r.Name] = r.Line
		out = append(out, r)
	}
	return out
}

var ruleName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

func parseRule(n *yaml.Node, bad func(*yaml.Node, string, ...any)) (Rule, bool) {
	r := Rule{Line: n.Line, Action: Terminate, Countdown: time.Minute, Mode: DryRun, Limit: 3, Window: time.Hour}
	if n.Kind != yaml.MappingNode {
		bad(n, "a rule is a mapping (name:, match:, action:, …)")
		return r, false
	}
	ok := true
	fail := func(at *yaml.Node, format string, args ...any) { bad(at, format, args...); ok = false }
	var hasMatch bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		switch key.Value {
		case "name":
			if !ruleName.MatchString(val.Value) {
				fail(val, "name: %q must be lower-case letters, digits, - or _ (at most 40)", val.Value)
			}
			r.Name = val.Value
		case "targets":
			r.Targets = patterns(val, fail)
		case "match":
			hasMatch = true
			parseMatch(val, &r, fail)
		case "action":
			switch Action(val.Value) {
			case Cancel, Terminate, CancelThenTerminate:
				r.Action = Action(val.Value)
			default:
				fail(val, "action: %q is not cancel, terminate or cancel-then-terminate", val.Value)
			}
		case "escalate_after":
			r.EscalateAfter = duration(val, fail)
		case "countdown":
			r.Countdown = duration(val, fail)
		case "mode":
			switch Mode(val.Value) {
			case DryRun, Act:
				r.Mode = Mode(val.Value)
			default:
				fail(val, "mode: %q is not dry-run or act", val.Value)
			}
		case "limit":
			r.Limit, r.Window = limit(val, fail)
		default:
			fail(key, "unknown key %q (keys: name, targets, match, action, escalate_after, countdown, mode, limit)", key.Value)
		}
	}
	switch {
	case r.Name == "":
		fail(n, "a rule needs a name:")
	case !hasMatch:
		fail(n, "rule %q needs a match: (a rule that matches every session is refused)", r.Name)
	case r.Duration == 0 && r.XactAge == 0 && r.Blocking == 0 && r.Waiting == 0:
		fail(n, "rule %q needs a duration:, transaction_age:, blocking: or waiting: in its match: (a rule would otherwise end sessions the moment they start)", r.Name)
	case r.Action == CancelThenTerminate && r.EscalateAfter <= 0:
		fail(n, "rule %q: cancel-then-terminate needs escalate_after: (how long after the cancel what still runs is terminated)", r.Name)
	case r.Action == Cancel && r.State.Idle():
		fail(n, "rule %q: cancel does nothing to a session idle in a transaction: use terminate", r.Name)
	}
	return r, ok
}

func parseMatch(n *yaml.Node, r *Rule, fail func(*yaml.Node, string, ...any)) {
	if n.Kind != yaml.MappingNode {
		fail(n, "match: is a mapping (user:, app:, database:, state:, duration:, transaction_age:, blocking:, waiting:)")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		switch key.Value {
		case "user", "app", "database":
			if err := match.CheckPattern(val.Value); err != nil {
				fail(val, "%s: %v", key.Value, err)
			}
			switch key.Value {
			case "user":
				r.User = val.Value
			case "app":
				r.App = val.Value
			default:
				r.Database = val.Value
			}
		case "state": // read as every state filter is (pg's one parser); a rule names one
			switch st, err := pg.ParseFilterState(strings.ToLower(strings.TrimSpace(val.Value))); {
			case err != nil:
				fail(val, "%v", err)
			case st == "active":
				r.State = pg.StateActive
			case st == "idle-in-transaction":
				r.State = pg.StateIdleInTransaction
			default:
				fail(val, "state: %q matches every session; a rule names one state: active or idle-in-transaction", val.Value)
			}
		case "duration":
			r.Duration = duration(val, fail)
		case "transaction_age":
			r.XactAge = duration(val, fail)
		case "waiting":
			r.Waiting = duration(val, fail)
		case "blocking":
			v, err := strconv.Atoi(val.Value)
			if err != nil || v < 1 {
				fail(val, "blocking: %q is not a whole number of at least 1", val.Value)
			}
			r.Blocking = v
		default:
			fail(key, "unknown condition %q (user, app, database, state, duration, transaction_age, blocking, waiting)", key.Value)
		}
	}
}

func patterns(n *yaml.Node, fail func(*yaml.Node, string, ...any)) []string {
	var out []string
	switch n.Kind {
	case yaml.ScalarNode:
		out = match.List(n.Value)
	case yaml.SequenceNode:
		for _, item := range n.Content {
			out = append(out, strings.TrimSpace(item.Value))
		}
	}
	if len(out) == 0 {
		fail(n, "targets: lists target names or patterns (leave it out for every target)")
	}
	for _, p := range out {
		if err := match.CheckPattern(p); err != nil {
			fail(n, "targets: %v", err)
		}
	}
	return out
}

func duration(n *yaml.Node, fail func(*yaml.Node, string, ...any)) time.Duration {
	d, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || d <= 0 {
		fail(n, "%q is not a positive duration like 30s, 10m or 1h", n.Value)
		return 0
	}
	return d
}

// limit reads "5 per 1h".
func limit(n *yaml.Node, fail func(*yaml.Node, string, ...any)) (int, time.Duration) {
	count, window, ok := strings.Cut(n.Value, " per ")
	c, err := strconv.Atoi(strings.TrimSpace(count))
	w, werr := time.ParseDuration(strings.TrimSpace(window))
	if !ok || err != nil || werr != nil || c < 1 || w <= 0 {
		fail(n, "limit: %q must read like 5 per 1h", n.Value)
		return 0, 0
	}
	if w > 24*time.Hour {
		fail(n, "limit: %q: the window is at most 24h (the state store forgets requests a day after they close)", n.Value)
		return 0, 0
	}
	return c, w
}
