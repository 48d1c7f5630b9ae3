package pg

import (
	"context"
	"slices"
	"time"
)

// Attempt is what came of asking for one backend's signal: the outcome,
// and for a signal sent, what watching it showed.
type Attempt struct {
	Outcome   Outcome
	Verified  Verification `json:",omitzero"`
	Err       string       `json:",omitempty"` // its target could not be asked: sent or not, unknown
	VerifyErr string       `json:",omitempty"` // sent; watching it end failed
	NotSent   string       `json:",omitempty"` // nothing was signalled, for this reason (its target left the fleet)
}

// SignalVerify signals each backend of ids that still has its identity
// (SignalSet), then watches those signalled for up to timeout (VerifySet):
// one Attempt per identity, in order. It is what carrying out a request
// means, from Slack or from the command line.
// A member whose target is not in the fleet is not asked for: nothing is
// signalled there, and its Attempt says so (NotSent).
func (f *Fleet) SignalVerify(ctx context.Context, action Action, ids []Identity, timeout time.Duration) []Attempt {
	names := f.Names()
	var asked []Identity
	var at []int
	for i, id := range ids {
		if slices.Contains(names, id.Target) {
			asked, at = append(asked, id), append(at, i)
		}
	}
	as := make([]Attempt, len(ids))
	for i, id := range ids {
		as[i] = Attempt{Outcome: Outcome{Action: action, ID: id}, NotSent: "target " + id.Target + " left the fleet (deleted or no longer discovered): nothing was signalled"}
	}
	if len(asked) == 0 {
		return as
	}
	outs, errs := f.SignalSet(ctx, action, asked)
	for j, a := range verifySent(ctx, f, outs, errs, timeout) {
		as[at[j]] = a
	}
	return as
}

// verifier is VerifySet.
type verifier interface {
	VerifySet(ctx context.Context, outs []Outcome, timeout time.Duration) ([]Verification, []error)
}

// verifySent turns signal outcomes into attempts, watching those sent.
func verifySent(ctx context.Context, v verifier, outs []Outcome, errs []error, timeout time.Duration) []Attempt {
	as := make([]Attempt, len(outs))
	var sent []Outcome
	var at []int
	for i := range outs {
		as[i].Outcome = outs[i]
		if errs[i] != nil {
			as[i].Err = errs[i].Error()
			continue
		}
		if outs[i].Result == Sent {
			sent, at = append(sent, outs[i]), append(at, i)
		}
	}
	if len(sent) == 0 {
		return as
	}
	vs, verrs := v.VerifySet(ctx, sent, timeout)
	for j, i := range at {
		as[i].Verified = vs[j]
		if verrs[j] != nil { // sent: only watching it failed
			as[i].VerifyErr = verrs[j].Error()
		}
	}
	return as
}

// Tally counts attempts the way a bulk request's card and the command line
// state them.
type Tally struct {
	Ended, MaybeNext, Skipped, Running, Unverified, Denied, Protected, Failed int
}

// Count tallies attempts.
func Count(as []Attempt) Tally {
	var t Tally
	for _, a := range as {
		switch {
		case a.NotSent != "":
			t.Skipped++
		case a.Err != "":
			t.Failed++
		case a.Outcome.Result == Denied:
			t.Denied++
		case a.Outcome.Result == Protected:
			t.Protected++
		case a.Outcome.Result != Sent:
			t.Skipped++
		case a.VerifyErr != "":
			t.Unverified++
		case a.Verified.Ended && a.Verified.MaybeNext:
			t.MaybeNext++
		case a.Verified.Ended:
			t.Ended++
		default:
			t.Running++
		}
	}
	return t
}

// StillRunning returns the members whose signal was sent and which were
// still running when watching stopped (as aligns members with their attempts).
func StillRunning(members []Backend, as []Attempt) []Backend {
	var out []Backend
	for i, a := range as {
		if i < len(members) && a.Err == "" && a.Outcome.Result == Sent && !a.Verified.Ended {
			out = append(out, members[i])
		}
	}
	return out
}
