package autopilot

import (
	"time"

	"github.com/pgkill/pgkill/pg"
)

// Firing is a rule matching a session: what the autopilot acts on.
type Firing struct {
	Rule    Rule
	Backend pg.Backend
}

// Evaluate returns, for every rule that covers l's target, the sessions it
// matches.
func Evaluate(rules []Rule, l pg.Listing) []Firing {
	var out []Firing
	for _, r := range rules {
		if !r.AppliesTo(l.Target) {
			continue
		}
		for _, b := range l.Backends {
			if r.Match(b) {
				out = append(out, Firing{Rule: r, Backend: b})
			}
		}
	}
	return out
}

// Threshold is the shortest time a session must have run for any of rules
// to match it (what a poll must list), and whether any rule covers target.
func Threshold(rules []Rule, target string) (time.Duration, bool) {
	var d time.Duration
	any := false
	for _, r := range rules {
		if !r.AppliesTo(target) {
			continue
		}
		if s := r.Shortest(); !any || s < d {
			d = s
		}
		any = true
	}
	return d, any
}
