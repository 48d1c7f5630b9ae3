package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/pg/match"
)

// Parse reads a policy file (YAML) over the defaults:
//
//	targets:
//	  prod:                       # a target name or a shell pattern
//	    channels: [C0PRODINC]
//	    viewers: [S0ONCALL]
//	    requesters: [S0ONCALL]
//	    approvers: [S0DBA]
//	    approvals: {terminate: 2, bulk: 2}
//	  stage-*:
//	    approvers: [S0DEV, U012ALICE]
//
// Every key a section leaves out comes from the defaults. Every problem is
// reported, each with its line, joined in one error.
func Parse(data []byte, defaults Rules) (*Policy, error) {
	p := &Policy{Default: defaults}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		return p, nil // an empty file: the defaults
	}
	var errs []error
	bad := func(n *yaml.Node, format string, args ...any) {
		errs = append(errs, fmt.Errorf("line %d: %s", n.Line, fmt.Sprintf(format, args...)))
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		bad(root, "the file must be a mapping with a targets: key")
		return nil, errors.Join(errs...)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		if key.Value == "autopilot" {
			p.Autopilot = autopilot.Parse(val, bad)
			continue
		}
		if key.Value != "targets" {
			bad(key, "unknown key %q (the file's keys: targets, autopilot)", key.Value)
			continue
		}
		if val.Kind != yaml.MappingNode {
			bad(val, "targets: must map target names or patterns to their rules")
			continue
		}
		for j := 0; j+1 < len(val.Content); j += 2 {
			name, body := val.Content[j], val.Content[j+1]
			if err := match.CheckPattern(name.Value); err != nil {
				bad(name, "target %q: %v", name.Value, err)
				continue
			}
			t := TargetRules{Pattern: name.Value, Line: name.Line}
			parseSection(body, &t.Rules, bad)
			p.Targets = append(p.Targets, t)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func parseSection(body *yaml.Node, r *Rules, bad func(*yaml.Node, string, ...any)) {
	if body.Kind != yaml.MappingNode {
		bad(body, "a target's rules are a mapping (channels:, viewers:, requesters:, approvers:, approvals:)")
		return
	}
	for k := 0; k+1 < len(body.Content); k += 2 {
		key, val := body.Content[k], body.Content[k+1]
		switch key.Value {
		case "channels":
			r.Channels = open(val, Anywhere, CheckChannels, bad)
		case "viewers":
			r.Viewers = open(val, Anyone, CheckPeople, bad)
		case "requesters":
			r.Requesters = open(val, Anyone, CheckPeople, bad)
		case "approvers":
			r.Approvers = ids(val, CheckPeople, bad)
			if r.Approvers != nil && len(r.Approvers) == 0 {
				bad(val, "approvers: must name at least one user or user group")
			}
		case "approvals":
			r.Approvals = approvals(val, bad)
		default:
			bad(key, "unknown key %q (keys: channels, viewers, requesters, approvers, approvals)", key.Value)
		}
	}
}

// The words that open a list to all on purpose: an empty list means the
// same, so a blank one is refused (a key left blank by mistake would
// otherwise let anyone in, silently).
const (
	Anyone   = "anyone"
	Anywhere = "anywhere"
)

// open reads a list that may be opened to all with word; a blank or empty
// list is refused with its line.
func open(n *yaml.Node, word string, check func([]string) error, bad func(*yaml.Node, string, ...any)) []string {
	if n.Kind == yaml.ScalarNode && strings.EqualFold(strings.TrimSpace(n.Value), word) {
		return []string{} // set and empty: open to all, overriding the default
	}
	out := ids(n, check, bad)
	if out != nil && len(out) == 0 {
		bad(n, "this list is blank: list the IDs, or write %q to mean it on purpose", word)
	}
	return out
}

// ids reads a YAML list of IDs, or one comma-separated string.
func ids(n *yaml.Node, check func([]string) error, bad func(*yaml.Node, string, ...any)) []string {
	out := []string{} // set, even when empty: an empty list overrides the default
	switch n.Kind {
	case yaml.ScalarNode:
		out = append(out, match.List(n.Value)...)
	case yaml.SequenceNode:
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				bad(item, "expected an ID")
				continue
			}
			out = append(out, strings.TrimSpace(item.Value))
		}
	default:
		bad(n, "expected a list of IDs")
		return nil
	}
	if err := check(out); err != nil {
		bad(n, "%v", err)
	}
	return out
}

func approvals(n *yaml.Node, bad func(*yaml.Node, string, ...any)) map[string]int {
	if n.Kind != yaml.MappingNode {
		bad(n, "approvals: maps kinds (cancel, terminate, bulk) to the number of approvers")
		return nil
	}
	out := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kind, val := n.Content[i], n.Content[i+1]
		v, err := strconv.Atoi(val.Value)
		switch {
		case kind.Value != Cancel && kind.Value != Terminate && kind.Value != Bulk:
			bad(kind, "unknown kind %q (kinds: cancel, terminate, bulk)", kind.Value)
		case err != nil || v < 1 || v > 10:
			bad(val, "%s: the number of approvers must be 1 to 10, not %q", kind.Value, val.Value)
		default:
			out[kind.Value] = v
		}
	}
	return out
}
