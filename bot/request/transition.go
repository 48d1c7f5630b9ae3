package request

import (
	"errors"
	"fmt"
	"time"
)

// Kind is what happens to a request.
type Kind int

const (
	Approve  Kind = iota + 1 // an approver approves; the last approval needed moves it to approved
	Deny                     // an approver denies it
	Withdraw                 // its requester withdraws it
	Expire                   // nobody decided it in time
	Close                    // it ends unsignalled for a reason known for certain (Event.To, Event.Why)
	Posted                   // its card was posted (Event.CardTS)
	Repost                   // a new attempt to post its card, when the last one is overdue (Event.Due)
	Waiting                  // its card still waits to be posted by a live process: due Event.Due from now
	Abandon                  // its signaller stopped before recording what it did
	Finish                   // its signal's outcome is recorded (Event.Record)
	Shown                    // a closed request's card shows it, as of Event.Version
	Reshow                   // a closed request's card is shown again: the last showing was not confirmed in time
)

// Event is one thing that happens to a request, with what the step needs.
type Event struct {
	Kind Kind
	User string // Approve, Deny, Withdraw: who

	// Approve: whether the requester may approve their own request, and how
	// long the signal may take once approved (the request's Deadline).
	SelfApproval bool
	Budget       time.Duration

	To      State          // Close: Expired or Withdrawn
	Why     string         // Close: why nothing was signalled; Abandon: what is known
	CardTS  string         // Posted
	Again   bool           // Posted: a card posted when none was recorded (an earlier one may exist)
	Due     time.Duration  // Repost, Waiting: when the post is overdue (again)
	Record  func(*Request) // Finish: writes the outcome
	Version int64          // Shown: the version the card shows

	// show is how long a closed request's card may take to show it before
	// the sweep shows it again (the Store's; 0: it is not watched).
	show time.Duration
}

// The reasons a step does not apply. The request is left as it was.
var (
	ErrDecided  = errors.New("already decided")
	ErrExpired  = errors.New("expired")
	ErrVoted    = errors.New("approved already by this approver")
	ErrSelf     = errors.New("one's own request")
	ErrNotYours = errors.New("not the requester")
	ErrNotDue   = errors.New("not due")
	ErrDryRun   = errors.New("a dry run signals nothing")
)

// Refused reports whether err is the answer of the state machine or of the
// store's records — the step does not apply, or the request is not known
// — rather than a failure to reach the store: trying again cannot help.
func Refused(err error) bool {
	for _, r := range []error{ErrDecided, ErrExpired, ErrVoted, ErrSelf, ErrNotYours, ErrNotDue, ErrDryRun, ErrUnknown} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// Apply is the state machine: it applies e to r at now — the store's
// clock, read with r — or returns why e does not apply, changing nothing.
// Every store runs every step through it. until, when not zero, is when the
// step stops being one the clock allows: a store writes it only while its
// own clock, at the write, is still before then (the time between the read
// and the write may be long: a paused process, a slow network).
func Apply(r *Request, e Event, now time.Time) (until time.Time, err error) {
	next := *r
	next.Votes = append([]Vote(nil), r.Votes...)
	if until, err = step(&next, e, now); err != nil {
		return time.Time{}, err
	}
	if next.State.Closed() && e.Kind != Shown && e.Kind != Reshow && e.Kind != Posted && e.show > 0 {
		// Closed now (or its outcome replaced): its card must come to show
		// it, even if the process that queued that edit stops first.
		next.Deadline = now.Add(e.show)
	}
	*r = next
	return until, nil
}

// showFor is how long after its decision a closed request's card is shown
// again while no showing is confirmed (a card deleted, Slack refusing).
const showFor = time.Hour

func step(r *Request, e Event, now time.Time) (until time.Time, err error) {
	switch e.Kind {
	case Approve:
		until = r.Expires // an approval after the expiry never counts
		switch {
		case r.State != Pending:
			return time.Time{}, ErrDecided
		case !now.Before(r.Expires):
			return time.Time{}, ErrExpired
		case r.Auto != nil && r.Auto.DryRun():
			return time.Time{}, ErrDryRun
		case r.Auto != nil && e.User == r.Auto.Actor() && now.Before(r.Deadline):
			return time.Time{}, ErrNotDue // a rule acts when its countdown ends, by this clock
		case r.Requester == e.User && !e.SelfApproval:
			return time.Time{}, ErrSelf
		case r.Voted(e.User):
			return time.Time{}, ErrVoted
		}
		r.Votes = append(r.Votes, Vote{User: e.User, At: now})
		if len(r.Votes) >= r.NeedsVotes() {
			r.State, r.Decider, r.Decided, r.Deadline = Approved, e.User, now, now.Add(e.Budget)
		}
	case Deny, Withdraw:
		switch {
		case r.State != Pending:
			return time.Time{}, ErrDecided
		case e.Kind == Withdraw && r.Requester != e.User:
			return time.Time{}, ErrNotYours
		}
		r.State, r.Decided, r.Deadline = Denied, now, time.Time{}
		if e.Kind == Withdraw {
			r.State = Withdrawn
		} else {
			r.Decider = e.User
		}
	case Expire:
		switch {
		case r.State != Pending:
			return time.Time{}, ErrDecided
		case now.Before(r.Expires):
			return time.Time{}, ErrNotDue
		}
		r.State, r.Decided, r.Deadline = Expired, now, time.Time{}
	case Close:
		if r.State != Pending {
			return time.Time{}, ErrDecided
		}
		if e.To != Expired && e.To != Withdrawn {
			return time.Time{}, fmt.Errorf("request: close to %s", e.To)
		}
		r.State, r.Decided, r.Deadline, r.NotSent = e.To, now, time.Time{}, e.Why
	case Posted:
		if r.CardTS == e.CardTS {
			return time.Time{}, ErrDecided
		}
		r.CardTS = e.CardTS
		r.Reposted = r.Reposted || e.Again
		if r.State == Pending && r.Auto == nil { // a rule's deadline is when it acts
			r.Deadline = time.Time{}
		}
	case Repost:
		if r.State != Pending || r.CardTS != "" || now.Before(r.Deadline) {
			return time.Time{}, ErrNotDue
		}
		r.Deadline, r.Reposted = now.Add(e.Due), true
	case Waiting:
		// A rule's deadline is when it acts, whatever became of its card.
		if r.State != Pending || r.CardTS != "" || r.Auto != nil {
			return time.Time{}, ErrNotDue
		}
		r.Deadline = now.Add(e.Due)
	case Abandon:
		if r.State != Approved || now.Before(r.Deadline) {
			return time.Time{}, ErrNotDue
		}
		r.State, r.Err, r.Abandoned, r.Deadline = Done, e.Why, true, time.Time{}
	case Finish:
		// The signaller records what it did; it may come after the sweep
		// closed the request as abandoned, and then replaces that guess.
		if r.State != Approved && !(r.State == Done && r.Abandoned) {
			return time.Time{}, ErrDecided
		}
		r.State, r.Err, r.Abandoned, r.Deadline = Done, "", false, time.Time{}
		e.Record(r)
	case Shown:
		switch {
		case !r.State.Closed():
			return time.Time{}, ErrNotDue
		case r.Deadline.IsZero():
			return time.Time{}, ErrDecided // shown already
		case e.Version != r.Version:
			return time.Time{}, ErrNotDue // it changed since: that change is shown in turn
		}
		r.Deadline = time.Time{}
	case Reshow:
		if !r.State.Closed() || r.Deadline.IsZero() || now.Before(r.Deadline) {
			return time.Time{}, ErrNotDue
		}
		r.Deadline = now.Add(e.show)
		if now.Sub(r.Decided) > showFor {
			r.Deadline = time.Time{} // no more tries
		}
	default:
		return time.Time{}, fmt.Errorf("request: unknown event %d", e.Kind)
	}
	return until, nil
}
