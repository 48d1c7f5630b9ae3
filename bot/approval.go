package bot

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// State is where an approval request stands. The only ways through are
//
//	pending → approved → done
//	pending → denied | expired | withdrawn
//
// and each step is one atomic compare-and-set (under a lock in memory, one
// UPDATE … WHERE state = … in the state store), so of two concurrent clicks
// exactly one wins: a backend is signalled at most once per request.
type State string

const (
	Pending   State = blocks.StatePending
	Approved  State = blocks.StateApproved
	Done      State = blocks.StateDone
	Denied    State = blocks.StateDenied
	Expired   State = blocks.StateExpired
	Withdrawn State = blocks.StateWithdrawn
)

// Approval is one request to signal one backend.
type Approval struct {
	ID        string
	Action    pg.Action
	Backend   pg.Backend // as read when the request was made; its Identity is what gets signalled
	Requester string
	Reason    string // the requester's own words (PGKILL_REASON); "" when none was given
	// A bulk request (Cancel all / Terminate all): the set frozen when it was
	// made, the filter that made it, what was left out and why, and each
	// member's outcome. Backend then only names the first target.
	Members   []pg.Backend           `json:",omitempty"`
	Scope     string                 `json:",omitempty"`
	Left      map[string]int         `json:",omitempty"`
	Results   []blocks.MemberOutcome `json:",omitempty"`
	Channel   string
	ThreadTS  string // the listing or alert it belongs to
	CardTS    string // the request card
	State     State
	Decider   string // the approver whose approval completed it, or who denied it
	Needed    int    // distinct approvers it needs (PGKILL_APPROVALS); 0 means 1
	Votes     []Vote // the approvals given so far, in order
	Requested time.Time
	Decided   time.Time
	Expires   time.Time
	Outcome   pg.Outcome
	Verified  pg.Verification
	Err       string // the signal could not be asked for: it may or may not have been sent
	VerifyErr string // the signal was sent, but watching it end failed
	NotSent   string // why nothing was signalled, known before any signal (the target left the fleet)
}

// Vote is one approver's approval of a request that needs several.
type Vote struct {
	User string
	At   time.Time
}

// bulk reports whether a is a bulk request.
func (a Approval) bulk() bool { return len(a.Members) > 0 }

// kind is the kind of request for PGKILL_APPROVALS and PGKILL_REASON.
func (a Approval) kind() string {
	if a.bulk() {
		return "bulk"
	}
	return string(a.Action)
}

// targets lists the targets a request acts on.
func (a Approval) targets() []string {
	if !a.bulk() {
		return []string{a.Backend.Target}
	}
	var out []string
	for _, m := range a.Members {
		if !slices.Contains(out, m.Target) {
			out = append(out, m.Target)
		}
	}
	return out
}

// voted reports whether user has approved a already.
func (a Approval) voted(user string) bool {
	for _, v := range a.Votes {
		if v.User == user {
			return true
		}
	}
	return false
}

// needed is how many distinct approvals a needs.
func (a Approval) needed() int { return max(a.Needed, 1) }

// requests keeps approval requests. Every method may fail only in the
// state store (the database is unreachable); the in-memory one never fails.
type requests interface {
	// add stores a new pending request and gives it an ID; when one for the
	// same action on the same backend is pending, it returns that one and false.
	add(ctx context.Context, a Approval) (Approval, bool, error)
	// get returns request id; false when it is unknown.
	get(ctx context.Context, id string) (Approval, bool, error)
	// transition moves id from one state to another applying change, as one
	// atomic step on the latest version; it returns the request as it is and
	// false when the request was not in state from (somebody else got there
	// first). When change returns an error nothing changes and that error is
	// returned: change is where a condition that must hold at the moment of
	// the step (not expired) is checked.
	transition(ctx context.Context, id string, from, to State, change func(*Approval) error) (Approval, bool, error)
	// apply runs fn on the latest version of request id and stores the
	// result as one atomic step, when fn reports true; fn may change the
	// state. It returns the request as stored and whether fn's change was
	// stored; fn's error aborts and is returned.
	apply(ctx context.Context, id string, fn func(*Approval) (bool, error)) (Approval, bool, error)
	// update changes a request's other fields on its latest version, never
	// its state, and never overwriting a concurrent change.
	update(ctx context.Context, id string, change func(*Approval)) error
	// endedBy finds the approved request whose signal went to execution id.
	endedBy(ctx context.Context, id pg.Identity) (Approval, bool)
	// inState lists the requests in state (the housekeeping sweep: expiry).
	inState(ctx context.Context, state State) ([]Approval, error)
	// abandoned lists the approved requests unchanged for age, by the store's
	// clock: their process stopped before recording the outcome. In memory
	// there are none: the process that approved is the one asking.
	abandoned(ctx context.Context, age time.Duration) ([]Approval, error)
}

// keepDecided is how long a decided request is remembered: clicks on its
// card answer "already decided", and alerts name it as what ended a query.
const keepDecided = 24 * time.Hour

// memRequests keeps requests in this process (no PGKILL_STATE_DSN).
type memRequests struct {
	mu   sync.Mutex
	seq  int
	byID map[string]*Approval
}

func newMemRequests() *memRequests { return &memRequests{byID: map[string]*Approval{}} }

func (s *memRequests) add(_ context.Context, a Approval) (Approval, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(a.Requested)
	for _, o := range s.byID {
		if o.State == Pending && o.dedup() == a.dedup() {
			return *o, false, nil
		}
	}
	s.seq++
	a.ID = fmt.Sprintf("R%d", s.seq)
	a.State = Pending
	s.byID[a.ID] = &a
	return a, true, nil
}

// prune forgets requests decided long ago, so a bot that runs for months
// does not grow; call with s.mu held.
func (s *memRequests) prune(now time.Time) {
	for id, a := range s.byID {
		if a.State != Pending && a.State != Approved && !a.Decided.IsZero() && now.Sub(a.Decided) > keepDecided {
			delete(s.byID, id)
		}
	}
}

func (s *memRequests) get(_ context.Context, id string) (Approval, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return Approval{}, false, nil
	}
	return *a, true, nil
}

func (s *memRequests) transition(_ context.Context, id string, from, to State, change func(*Approval) error) (Approval, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return Approval{}, false, nil
	}
	if a.State != from {
		return *a, false, nil
	}
	next := *a
	next.State = to
	if change != nil {
		if err := change(&next); err != nil {
			return *a, false, err
		}
	}
	*a = next
	return next, true, nil
}

func (s *memRequests) apply(_ context.Context, id string, fn func(*Approval) (bool, error)) (Approval, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return Approval{}, false, nil
	}
	next := *a
	next.Votes = append([]Vote(nil), a.Votes...)
	write, err := fn(&next)
	if err != nil || !write {
		return *a, false, err
	}
	*a = next
	return next, true, nil
}

func (s *memRequests) update(_ context.Context, id string, change func(*Approval)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.byID[id]; ok {
		state := a.State
		change(a)
		a.State = state
	}
	return nil
}

func (s *memRequests) endedBy(_ context.Context, id pg.Identity) (Approval, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.byID {
		if signalled(*a, id) {
			return *a, true
		}
	}
	return Approval{}, false
}

func (s *memRequests) abandoned(context.Context, time.Duration) ([]Approval, error) {
	return nil, nil
}

func (s *memRequests) inState(_ context.Context, state State) ([]Approval, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Approval
	for _, a := range s.byID {
		if a.State == state {
			out = append(out, *a)
		}
	}
	return out, nil
}

// signalled reports whether a is a finished request whose signal went to
// execution id.
func signalled(a Approval, id pg.Identity) bool {
	if a.State != Done {
		return false
	}
	for i, m := range a.Members {
		if i < len(a.Results) && a.Results[i].Outcome.Result == pg.Sent && !a.Results[i].Verified.MaybeNext &&
			m.Target == id.Target && sameExecution(m.Identity, id) {
			return true
		}
	}
	// A signal that may have reached the next statement did not end this
	// one: it had ended by itself.
	return a.Outcome.Result == pg.Sent && !a.Verified.MaybeNext && a.Backend.Target == id.Target && sameExecution(a.Backend.Identity, id)
}

// view is the card's input.
func (a Approval) view(approvers []string) blocks.Request {
	return blocks.Request{
		ID: a.ID, Action: a.Action, Backend: a.Backend, Requester: a.Requester, Approvers: approvers,
		State: string(a.State), Decider: a.Decider, Needed: a.needed(), Votes: voters(a.Votes), Reason: a.Reason,
		Members: a.Members, Scope: a.Scope, Left: a.Left, Results: a.Results,
		RequestedAt: a.Requested, DecidedAt: a.Decided,
		ExpiresAt: a.Expires, Outcome: a.Outcome, Verified: a.Verified, Err: a.Err, VerifyErr: a.VerifyErr, NotSent: a.NotSent,
	}
}

func voters(vs []Vote) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.User
	}
	return out
}
