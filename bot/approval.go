package bot

import (
	"fmt"
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
// and each step is taken under the store's lock, so of two concurrent
// clicks exactly one wins: a backend is signalled at most once per request.
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
	Channel   string
	ThreadTS  string // the listing or alert it belongs to
	CardTS    string // the request card
	State     State
	Decider   string
	Requested time.Time
	Decided   time.Time
	Expires   time.Time
	Outcome   pg.Outcome
	Verified  pg.Verification
	Err       string
}

// approvals holds every request of this process.
type approvals struct {
	mu   sync.Mutex
	seq  int
	byID map[string]*Approval
}

func newApprovals() *approvals { return &approvals{byID: map[string]*Approval{}} }

// add stores a new pending request and gives it an ID. If a request for the
// same action on the same backend is already pending, it returns that one
// and false.
func (s *approvals) add(a Approval) (Approval, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.byID {
		if o.State == Pending && o.Action == a.Action && o.Backend.Identity == a.Backend.Identity {
			return *o, false
		}
	}
	s.prune(a.Requested)
	s.seq++
	a.ID = fmt.Sprintf("R%d", s.seq)
	a.State = Pending
	s.byID[a.ID] = &a
	return a, true
}

// keepDecided is how long a decided request is remembered: clicks on its
// card answer "already decided", and alerts name it as what ended a query.
const keepDecided = 24 * time.Hour

// prune forgets requests decided long ago, so a bot that runs for months
// does not grow; call with s.mu held.
func (s *approvals) prune(now time.Time) {
	for id, a := range s.byID {
		if a.State != Pending && a.State != Approved && !a.Decided.IsZero() && now.Sub(a.Decided) > keepDecided {
			delete(s.byID, id)
		}
	}
}

func (s *approvals) get(id string) (Approval, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return Approval{}, false
	}
	return *a, true
}

// transition moves request id from one state to another and applies change,
// atomically. It fails, returning the request as it is, when the request is
// not in state from: somebody else got there first.
func (s *approvals) transition(id string, from, to State, change func(*Approval)) (Approval, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.byID[id]
	if !ok {
		return Approval{}, false
	}
	if a.State != from {
		return *a, false
	}
	a.State = to
	if change != nil {
		change(a)
	}
	return *a, true
}

// update changes a request without changing its state (e.g. its card's ts).
func (s *approvals) update(id string, change func(*Approval)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.byID[id]; ok {
		change(a)
	}
}

// view is the card's input.
func (a Approval) view(approvers []string) blocks.Request {
	return blocks.Request{
		ID: a.ID, Action: a.Action, Backend: a.Backend, Requester: a.Requester, Approvers: approvers,
		State: string(a.State), Decider: a.Decider, RequestedAt: a.Requested, DecidedAt: a.Decided,
		ExpiresAt: a.Expires, Outcome: a.Outcome, Verified: a.Verified, Err: a.Err,
	}
}

// endedBy finds the approved request that signalled the execution id.
func (s *approvals) endedBy(id pg.Identity) (Approval, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.byID {
		if a.State == Done && a.Outcome.Result == pg.Sent && sameExecution(a.Backend.Identity, id) && a.Backend.Target == id.Target {
			return *a, true
		}
	}
	return Approval{}, false
}
