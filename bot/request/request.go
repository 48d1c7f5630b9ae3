// Package request owns an approval request — its type, its states and the
// one function that moves it between them (Apply) — and keeps requests in
// a Store, in memory or in the state store, on that store's clock.
package request

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// State is where a request stands. The only ways through are
//
//	pending → approved → done
//	pending → denied | expired | withdrawn
//
// and each step is one atomic compare-and-set in the Store, so of two
// concurrent clicks exactly one wins: a backend is signalled at most once
// per request.
type State string

const (
	Pending   State = "pending"
	Approved  State = "approved" // approved: being signalled, until Deadline
	Done      State = "done"
	Denied    State = "denied"
	Expired   State = "expired"
	Withdrawn State = "withdrawn"
)

// Open reports whether a request in s still waits for a decision: at most
// one open request acts on the same thing.
func (s State) Open() bool { return s == Pending }

// Closed reports whether a request in s is over: nothing more is signalled
// for it, and its card's last edit shows how it ended.
func (s State) Closed() bool { return s != Pending && s != Approved }

// Request is one request to signal one backend, or a frozen set of them.
// The times are the store's clock's.
type Request struct {
	ID      string `json:"-"`
	Version int64  `json:"-"` // changes with every step; cards show the highest
	State   State  `json:"-"`

	Action    pg.Action
	Backend   pg.Backend // as read when it was made; its Identity is what gets signalled
	Requester string
	Reason    string // the requester's own words; "" when none was given
	// A bulk request: the set frozen when it was made, the filter that made
	// it, what was left out and why, and each member's outcome (aligned with
	// Members). Backend then only names the first target.
	Members []pg.Backend   `json:",omitempty"`
	Scope   string         `json:",omitempty"`
	Left    map[string]int `json:",omitempty"`
	Results []pg.Attempt   `json:",omitempty"`

	Channel  string
	ThreadTS string // the listing or alert it belongs to
	CardTS   string // its card: the only message whose buttons decide it
	// Reposted: a card was posted for it again, so an earlier one that was
	// never recorded may still be on screen.
	Reposted bool `json:",omitempty"`

	Decider string // the approver whose approval completed it, or who denied it
	Needed  int    // distinct approvers it needs; 0 means 1
	Votes   []Vote // the approvals given so far, in order

	Requested time.Time `json:"-"`
	Decided   time.Time `json:"-"`
	Expires   time.Time `json:"-"`
	// Deadline: pending, its card must be recorded by then; approved, its
	// signal must have been sent by then; closed, its card must show so by
	// then (zero once a showing is confirmed). The sweep acts on each after it.
	Deadline time.Time `json:"-"`

	Outcome   pg.Outcome
	Verified  pg.Verification
	Err       string // the signal could not be asked for: it may or may not have been sent
	VerifyErr string // the signal was sent, but watching it end failed
	NotSent   string // why nothing was signalled, known for certain
	Abandoned bool   `json:",omitempty"` // Err was written by the sweep, not by the signaller

	Nonce string `json:",omitempty"` // the add that made it: a lost reply is recognised by it

	// Auto: a rule made it (the autopilot); it is carried out at Deadline
	// unless a person stops it first. Nil for a person's request.
	Auto *Auto `json:",omitempty"`
	// Prevent: what server setting would have ended it without anyone,
	// once it is done.
	Prevent *Prevention `json:",omitempty"`
}

// Auto is what a rule's request carries.
type Auto struct {
	Rule string
	Mode string // dry-run or act
	Why  string // what matched, in words ("idle in transaction for 14m, blocks 212 sessions")
	// Escalate: the rule cancels, then terminates what still runs this long
	// after (cancel-then-terminate).
	Escalate time.Duration `json:",omitempty"`
}

// Prevention is the server setting that would have ended a session without
// anyone, and what the session's role has now.
type Prevention struct {
	Setting string // idle_in_transaction_session_timeout or statement_timeout
	Value   string // a value that would have ended it: "10min"
	Role    string
	DB      string
	Current string // the role's value now; "" when it could not be read
	Source  string // where Current comes from: "role in database", "role", "database", "server"
	RDS     bool   // the target is on Amazon RDS/Aurora: a parameter group sets the server's
}

// Vote is one approver's approval.
type Vote struct {
	User string
	At   time.Time
}

// Bulk reports whether r acts on a set.
func (r Request) Bulk() bool { return len(r.Members) > 0 }

// Targets lists the targets r acts on.
func (r Request) Targets() []string {
	if !r.Bulk() {
		return []string{r.Backend.Target}
	}
	var out []string
	for _, m := range r.Members {
		if !slices.Contains(out, m.Target) {
			out = append(out, m.Target)
		}
	}
	return out
}

// NeedsVotes is how many distinct approvals r needs.
func (r Request) NeedsVotes() int { return max(r.Needed, 1) }

// Voted reports whether user has approved r already.
func (r Request) Voted(user string) bool {
	return slices.ContainsFunc(r.Votes, func(v Vote) bool { return v.User == user })
}

// Voters lists who approved r, in order.
func (r Request) Voters() []string {
	out := make([]string, len(r.Votes))
	for i, v := range r.Votes {
		out[i] = v.User
	}
	return out
}

// Approvers names who approved r: every vote, or the decider.
func (r Request) Approvers() []string {
	if len(r.Votes) > 0 {
		return r.Voters()
	}
	if r.Decider != "" {
		return []string{r.Decider}
	}
	return nil
}

// Key names what r acts on: one action on one statement execution, or on
// one frozen set. At most one open request has a given key.
func (r Request) Key() string {
	if r.Auto != nil {
		return AutoPrefix(r.Auto.Rule, r.Backend.Target) + IdentityKey(r.Backend.Identity) + "|" + string(r.Action)
	}
	if !r.Bulk() {
		return string(r.Action) + "|" + IdentityKey(r.Backend.Identity)
	}
	ids := make([]string, len(r.Members))
	for i, m := range r.Members {
		ids[i] = IdentityKey(m.Identity)
	}
	slices.Sort(ids)
	h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return "bulk|" + string(r.Action) + "|" + hex.EncodeToString(h[:16])
}

// AutoPrefix begins the key of every request rule makes on target: the
// breaker counts them.
func AutoPrefix(rule, target string) string { return "auto|" + rule + "|" + target + "|" }

// DryRun reports whether the rule only shows what it would do.
func (a *Auto) DryRun() bool { return a.Mode == "dry-run" }

// Actor names who acted for r's approval when a rule did.
func (a *Auto) Actor() string { return "autopilot:" + a.Rule }

// memberKeys are the identity keys of what r acts on.
func (r Request) memberKeys() []string {
	if !r.Bulk() {
		return []string{IdentityKey(r.Backend.Identity)}
	}
	out := make([]string, len(r.Members))
	for i, m := range r.Members {
		out[i] = IdentityKey(m.Identity)
	}
	return out
}

// IdentityKey names one statement execution on one server.
func IdentityKey(id pg.Identity) string {
	return strings.Join([]string{id.Target, strconv.Itoa(int(id.PID)),
		id.BackendStart.UTC().Format(time.RFC3339Nano), id.QueryStart.UTC().Format(time.RFC3339Nano),
		id.ServerStart.UTC().Format(time.RFC3339Nano)}, "|")
}

// SameExecution compares the parts of two identities that pin one statement
// execution on one server.
func SameExecution(a, b pg.Identity) bool {
	return a.Target == b.Target && a.PID == b.PID && a.BackendStart.Equal(b.BackendStart) &&
		a.QueryStart.Equal(b.QueryStart) && a.ServerStart.Equal(b.ServerStart)
}

// Signalled reports whether r is done and its signal went to execution id
// and ended it (a signal that may have reached the next statement did not
// end this one: it had ended by itself).
func (r Request) Signalled(id pg.Identity) bool {
	if r.State != Done {
		return false
	}
	for i, m := range r.Members {
		if i < len(r.Results) && r.Results[i].Outcome.Result == pg.Sent && !r.Results[i].Verified.MaybeNext && SameExecution(m.Identity, id) {
			return true
		}
	}
	return !r.Bulk() && r.Outcome.Result == pg.Sent && !r.Verified.MaybeNext && SameExecution(r.Backend.Identity, id)
}

// Tally counts r's member attempts.
func (r Request) Tally() pg.Tally { return pg.Count(r.Results) }

// StillRunning returns the members whose signal was sent and which were
// still running when pgkill stopped watching.
func (r Request) StillRunning() []pg.Backend { return pg.StillRunning(r.Members, r.Results) }

// Word is the one-word result of a decided request, for logs and metrics.
func (r Request) Word() string {
	switch {
	case r.Bulk():
		return "bulk" // the counts are in Tally
	case r.Err != "", r.NotSent != "":
		return "error"
	case r.Outcome.Result == pg.Sent && r.VerifyErr != "":
		return "unverified"
	case r.Outcome.Result == pg.Sent && r.Verified.Ended:
		return "ended"
	case r.Outcome.Result == pg.Sent:
		return "still-running"
	}
	return string(r.Outcome.Result)
}
