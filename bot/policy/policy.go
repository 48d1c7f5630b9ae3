// Package policy decides who may see and act on which target, and where:
// the defaults from environment variables, rules per target from a policy
// file (PGKILL_POLICY_FILE).
package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/pg/match"
)

// Kinds of request, each with its own number of approvals.
const (
	Cancel    = "cancel"
	Terminate = "terminate"
	Bulk      = "bulk"
)

// Kinds lists the kinds of request in the order they are documented.
var Kinds = []string{Cancel, Terminate, Bulk}

// Rules are what holds for one target.
type Rules struct {
	Channels   []string       // where /pgkill answers and buttons act; empty: anywhere
	Viewers    []string       // who may list and run doctor; empty: anyone
	Requesters []string       // who may press Cancel/Terminate; empty: anyone who may view
	Approvers  []string       // who may approve or deny; never empty
	Approvals  map[string]int // distinct approvers needed per kind; missing: 1
}

// Needed is how many distinct approvers a request needs: the most that any
// of its kinds asks for (a bulk terminate is both bulk and terminate).
func (r Rules) Needed(kinds ...string) int {
	n := 1
	for _, k := range kinds {
		n = max(n, r.Approvals[k])
	}
	return n
}

// KindsOf lists the kinds whose rules a request of action holds to: its
// action's, and bulk's too when it acts on a set. The strictest rule of
// its kinds wins, so a bulk request never needs less than its action.
func KindsOf(action string, bulk bool) []string {
	if bulk {
		return []string{Bulk, action}
	}
	return []string{action}
}

// InChannel reports whether channel is one where the rules let pgkill act.
func (r Rules) InChannel(channel string) bool {
	return len(r.Channels) == 0 || slices.Contains(r.Channels, channel)
}

// TargetRules are the rules of the targets whose names match Pattern.
type TargetRules struct {
	Pattern string // a target name or shell pattern (prod, stage-*)
	Line    int    // where the file set it, for messages
	Rules
}

// Policy is every rule: defaults and per-target overrides, and the
// autopilot's rules.
type Policy struct {
	Default   Rules
	Targets   []TargetRules // in file order: the first matching pattern wins
	Autopilot []autopilot.Rule
}

// For returns the rules of target: the first matching target section, with
// whatever it does not set taken from the defaults.
func (p *Policy) For(target string) Rules {
	for _, t := range p.Targets {
		if match.Pattern(t.Pattern, target) {
			return merge(p.Default, t.Rules)
		}
	}
	return p.Default
}

func merge(base, over Rules) Rules {
	out := base
	if over.Channels != nil {
		out.Channels = over.Channels
	}
	if over.Viewers != nil {
		out.Viewers = over.Viewers
	}
	if over.Requesters != nil {
		out.Requesters = over.Requesters
	}
	if over.Approvers != nil {
		out.Approvers = over.Approvers
	}
	if over.Approvals != nil {
		out.Approvals = map[string]int{}
		for k, v := range base.Approvals {
			out.Approvals[k] = v
		}
		for k, v := range over.Approvals {
			out.Approvals[k] = v
		}
	}
	return out
}

// Channels lists every channel any rule allows (for "use it in …"); nil
// when some target may be used anywhere.
func (p *Policy) Channels(targets []string) []string {
	var out []string
	for _, t := range targets {
		r := p.For(t)
		if len(r.Channels) == 0 {
			return nil
		}
		for _, c := range r.Channels {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

var (
	personID  = regexp.MustCompile(`^[UWS][A-Z0-9]{2,}$`)
	channelID = regexp.MustCompile(`^[CG][A-Z0-9]{2,}$`)
)

// CheckPeople checks a list of Slack user (U…/W…) and user-group (S…) IDs.
func CheckPeople(ids []string) error {
	for _, id := range ids {
		if !personID.MatchString(id) {
			return fmt.Errorf("%q is not a Slack user ID (U…/W…) or user-group ID (S…)", id)
		}
	}
	return nil
}

// CheckChannels checks a list of channel IDs (C…, or G… for old private
// channels). Direct messages (D…) cannot be allowed: nothing pgkill posts
// there is shared with the incident.
func CheckChannels(ids []string) error {
	for _, id := range ids {
		if !channelID.MatchString(id) {
			return fmt.Errorf("%q is not a channel ID (C…)", id)
		}
	}
	return nil
}

// ParseApprovals reads "cancel=1,terminate=2,bulk=2" (PGKILL_APPROVALS).
func ParseApprovals(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, entry := range match.List(s) {
		kind, n, ok := strings.Cut(entry, "=")
		kind = strings.ToLower(strings.TrimSpace(kind))
		if !ok || !slices.Contains(Kinds, kind) {
			return nil, fmt.Errorf("%q: write kind=N with kind one of %s", entry, strings.Join(Kinds, ", "))
		}
		v, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || v < 1 || v > 10 {
			return nil, fmt.Errorf("%q: the number of approvers must be 1 to 10", entry)
		}
		out[kind] = v
	}
	return out, nil
}
