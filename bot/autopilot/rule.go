// Package autopilot holds the rules that end sessions when nobody is
// awake: what a rule matches, how it acts, and the state that stops it
// (pauses and breakers).
package autopilot

import (
	"time"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
)

// Mode is what a rule does when it fires.
type Mode string

const (
	// DryRun posts what the rule would have done and signals nothing: a
	// rule's first mode.
	DryRun Mode = "dry-run"
	// Act counts down, then signals, unless a person stops it.
	Act Mode = "act"
)

// Action is what a rule asks for.
type Action string

const (
	Cancel    Action = "cancel"
	Terminate Action = "terminate"
	// CancelThenTerminate cancels, then terminates (after its own
	// countdown) what is still running EscalateAfter later.
	CancelThenTerminate Action = "cancel-then-terminate"
)

// First is the signal a rule sends first.
func (a Action) First() pg.Action {
	if a == Terminate {
		return pg.Terminate
	}
	return pg.Cancel
}

// Rule is one autopilot rule of the policy file.
type Rule struct {
	Name    string
	Line    int      // where the file declares it
	Targets []string // target names or patterns; empty: every target

	// What it matches: every condition set must hold.
	User, App, Database string   // shell patterns (pg/match)
	State               pg.State // active, or idle in transaction (either kind); "" either
	Duration            time.Duration
	XactAge             time.Duration
	Blocking            int           // a root blocker with at least this many sessions waiting on it
	Waiting             time.Duration // waiting on a lock for longer than this

	Action        Action
	EscalateAfter time.Duration // CancelThenTerminate: how long after the cancel
	Countdown     time.Duration // between the card and the signal
	Mode          Mode
	// Limit firings per target per Window trip the breaker: the rule then
	// stops acting on that target until a person resumes it.
	Limit  int
	Window time.Duration
}

// AppliesTo reports whether r covers target.
func (r Rule) AppliesTo(target string) bool {
	if len(r.Targets) == 0 {
		return true
	}
	for _, p := range r.Targets {
		if match.Pattern(p, target) {
			return true
		}
	}
	return false
}

// Match reports whether b meets every condition of r. A protected
// session, or one that is not a client backend, never matches.
func (r Rule) Match(b pg.Backend) bool {
	switch {
	case !b.Signallable() || b.BackendType != "client backend":
		return false
	case r.State == pg.StateActive && b.State != pg.StateActive:
		return false
	case r.State.Idle() && !b.State.Idle():
		return false
	case r.Duration > 0 && b.Duration < r.Duration:
		return false
	case r.XactAge > 0 && b.XactAge < r.XactAge:
		return false
	// Only the lock tree proves a root blocker: a listing without it (a
	// lock storm's first answer) names a likely root, a guess a person may
	// act on and a rule never does.
	case r.Blocking > 0 && (!b.RootBlocker() || b.BlockingTotal < r.Blocking):
		return false
	case r.Waiting > 0 && (b.WaitEventType != "Lock" || b.Duration < r.Waiting):
		return false
	}
	// The patterns last: they cost the most (BenchmarkEvaluate).
	return match.Pattern(r.User, b.User) && match.Pattern(r.App, b.Application) && match.Pattern(r.Database, b.Database)
}

// Shortest is the shortest duration a session must have run to match r:
// what the watcher's poll must list.
func (r Rule) Shortest() time.Duration {
	d := r.Duration
	if r.Waiting > 0 && (d == 0 || r.Waiting < d) {
		d = r.Waiting
	}
	return d
}
