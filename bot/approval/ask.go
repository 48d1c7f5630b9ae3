package approval

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// errLeftFleet is the error of an operation on a target that is no longer
// in the fleet: discovery no longer finds it (the instance was deleted, or
// its tags changed), so there is nothing to connect to.
var errLeftFleet = errors.New("left the fleet (deleted or no longer discovered)")

func leftFleet(target string) error { return fmt.Errorf("target %s %w", target, errLeftFleet) }

// Ask is a request about to be made: checked, and waiting for its reason
// when one is asked for.
type Ask struct {
	Action pg.Action
	Kinds  []string // policy kinds whose rules it holds to
	// One backend, as read now (its Identity is the one shown), or a frozen
	// set and the members action can act on.
	Backend pg.Backend
	Set     *request.Set
	Members []pg.Backend
	Left    map[string]int
}

// Kinds is an Ask with only the kinds of the request a button value asks
// for (what its reason is held to); false when the value is not pgkill's.
func Kinds(value string) (Ask, bool) {
	if v, err := blocks.DecodeBulk(value); err == nil {
		return Ask{Action: v.Action, Kinds: policy.KindsOf(string(v.Action), true)}, true
	}
	sig, err := blocks.DecodeSignal(value)
	if err != nil {
		return Ask{}, false
	}
	return Ask{Action: sig.Action, Kinds: policy.KindsOf(string(sig.Action), false)}, true
}

// Prompt is what the reason form shows of a.
func (a Ask) Prompt(required bool) blocks.ReasonPrompt {
	if a.Set != nil {
		return blocks.ReasonPrompt{Action: a.Action, Members: len(a.Members), Scope: orAll(a.Set.Scope), Required: required}
	}
	return blocks.ReasonPrompt{Action: a.Action, Backend: a.Backend, Required: required}
}

// Reason says whether a's requester is asked for a reason, and whether one
// is required.
func (w *Workflow) Reason(a Ask) (ask, required bool) { return w.reasons.Ask(a.Kinds...) }

// ReasonProblem says what is wrong with reason for a, or "": a required
// reason must be given, and any reason given is held to the same rule.
func (w *Workflow) ReasonProblem(a Ask, reason string) string {
	_, required := w.Reason(a)
	if !required && reason == "" {
		return ""
	}
	if err := policy.CheckReason(reason); err != nil {
		return capitalize(err.Error()) + "."
	}
	return ""
}

// ReasonRefusal is the answer to a request whose reason will not do
// (required and missing, or given and not a reason), or "". scope, for a
// bulk request, is quoted in the command that would do.
func (w *Workflow) ReasonRefusal(action pg.Action, kinds []string, reason, scope string) string {
	_, required := w.reasons.Ask(kinds...)
	how := "press the button again and give one (a few words or an incident link)"
	if len(kinds) > 1 {
		how = fmt.Sprintf("`%s %s %s reason=\"…\"` (a few words or an incident link)", w.cfg.Command, action, blocks.Escape(scope))
	}
	switch err := policy.CheckReason(reason); {
	case required && reason == "":
		what := string(action)
		if len(kinds) > 1 {
			what = "bulk " + what
		}
		return fmt.Sprintf(":pencil: a %s needs a reason here: %s. Nothing was requested.", what, how)
	case reason != "" && err != nil:
		return fmt.Sprintf(":pencil: that reason will not do: %s. Write %s. Nothing was requested.", blocks.Escape(err.Error()), how)
	}
	return ""
}

// Check checks a Cancel, Terminate, Cancel all or Terminate all click
// before anything is asked or recorded: the button's value, the policy,
// and that what it names may still be signalled. When it may not, it tells
// the user why and returns false.
func (w *Workflow) Check(ctx context.Context, c Click) (Ask, bool) {
	if v, err := blocks.DecodeBulk(c.Value); err == nil {
		return w.checkSet(ctx, c, v)
	}
	sig, err := blocks.DecodeSignal(c.Value)
	if err != nil {
		w.Tell(c.ResponseURL, ":warning: that button is not one pgkill understands; run the command again.")
		return Ask{}, false
	}
	if !w.may(ctx, c, policy.Request, string(sig.Action), []string{sig.Target}) {
		return Ask{}, false
	}
	cur, err := w.backend(ctx, sig.Target, sig.PID)
	switch {
	case errors.Is(err, pg.ErrNotFound) || (err == nil && !request.SameExecution(cur.Identity, sig.Identity)):
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: pid %d on %s is no longer running that query: nothing to approve. Press *Refresh* for the current state.", sig.PID, blocks.Escape(sig.Target)))
		return Ask{}, false
	case errors.Is(err, errLeftFleet):
		w.Tell(c.ResponseURL, ":information_source: "+blocks.Escape(err.Error())+": nothing to request, nothing was signalled. Run the command again for the current targets.")
		return Ask{}, false
	case err != nil:
		w.Tell(c.ResponseURL, ":x: could not read the backend: "+blocks.Escape(err.Error()))
		return Ask{}, false
	case cur.State == "idle": // the same answer for cancel and terminate: there is nothing to end
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: pid %d on %s finished that query and is idle, outside any transaction: nothing is running, so there is nothing to end. pgkill spares idle sessions on purpose.", sig.PID, blocks.Escape(sig.Target)))
		return Ask{}, false
	case !cur.Signallable():
		w.Tell(c.ResponseURL, ":lock: pgkill will not signal this backend: "+blocks.Escape(cur.Protected))
		return Ask{}, false
	case sig.Action == pg.Cancel && cur.State != pg.StateActive:
		w.Tell(c.ResponseURL, ":information_source: the session is "+string(cur.State)+": cancel would do nothing there. Use *Terminate*.")
		return Ask{}, false
	}
	cur.Identity = sig.Identity // the identity that was shown is the one approved
	return Ask{Action: sig.Action, Kinds: policy.KindsOf(string(sig.Action), false), Backend: cur}, true
}

// backend reads a backend, saying plainly when its target left the fleet.
func (w *Workflow) backend(ctx context.Context, target string, pid int32) (pg.Backend, error) {
	if !w.inFleet(target) {
		return pg.Backend{}, leftFleet(target)
	}
	b, err := w.db.Backend(ctx, target, pid)
	if err != nil && !w.inFleet(target) {
		err = fmt.Errorf("%w (while it was being read): %w", leftFleet(target), err)
	}
	return b, err
}

func (w *Workflow) inFleet(target string) bool {
	for _, n := range w.db.Names() {
		if n == target {
			return true
		}
	}
	return false
}

// checkSet checks a Cancel all / Terminate all click.
func (w *Workflow) checkSet(ctx context.Context, c Click, v blocks.Bulk) (Ask, bool) {
	set, ok, err := w.sets.Get(ctx, v.SetID)
	switch {
	case err != nil:
		w.storeFailed(c.ResponseURL, "read the listing's set", err)
		return Ask{}, false
	case !ok:
		w.Tell(c.ResponseURL, ":information_source: pgkill no longer knows the sessions of that listing (over a day old, or a restart without a state store): press *Refresh* and try again. Nothing was requested.")
		return Ask{}, false
	}
	return w.checkFrozen(ctx, c, v.Action, set)
}

// checkFrozen checks a bulk request on a frozen set: the requester allowed
// on every target it touches (before anything about the set is said),
// something to act on, and not too much.
func (w *Workflow) checkFrozen(ctx context.Context, c Click, action pg.Action, set request.Set) (Ask, bool) {
	members, left := set.ForAction(action)
	touched := members
	if len(touched) == 0 {
		touched = set.Members
	}
	if !w.may(ctx, c, policy.Request, "bulk "+string(action), targetsOf(touched)) {
		return Ask{}, false
	}
	if len(members) == 0 {
		w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: no session of %s can be %sed: nothing was requested.", blocks.Escape(orAll(set.Scope)), action))
		return Ask{}, false
	}
	if len(members) > w.cfg.BulkMax {
		w.Tell(c.ResponseURL, fmt.Sprintf(":no_entry: %d sessions match, more than one request may end (PGKILL_BULK_MAX=%d). Narrow it — a target, db=, user=, app=, a longer duration — or raise PGKILL_BULK_MAX. Nothing was requested.", len(members), w.cfg.BulkMax))
		return Ask{}, false
	}
	return Ask{Action: action, Kinds: policy.KindsOf(string(action), true), Set: &set, Members: members, Left: left}, true
}

// AskSet is a bulk request from the command line: the set the listing
// matched now. It tells the user when there is nothing to request.
func (w *Workflow) AskSet(ctx context.Context, c Click, action pg.Action, set request.Set) (Ask, bool) {
	return w.checkFrozen(ctx, c, action, set)
}

func targetsOf(members []pg.Backend) []string {
	var out []string
	for _, m := range members {
		if !contains(out, m.Target) {
			out = append(out, m.Target)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Make records the request a checked click asks for, with its reason, and
// posts its card (and, for a bulk request, the whole list in its thread).
func (w *Workflow) Make(ctx context.Context, c Click, a Ask, reason string) {
	scope := ""
	if a.Set != nil {
		scope = a.Set.Scope
	}
	if why := w.ReasonRefusal(a.Action, a.Kinds, reason, scope); why != "" {
		w.Tell(c.ResponseURL, why)
		return
	}
	r := request.Request{Action: a.Action, Backend: a.Backend, Requester: c.User, Reason: reason, Channel: c.Channel, ThreadTS: c.Thread}
	targets := []string{a.Backend.Target}
	if a.Set != nil {
		r.Members, r.Scope, r.Left = a.Members, a.Set.Scope, a.Left
		r.Backend = pg.Backend{Identity: pg.Identity{Target: a.Members[0].Target}}
		targets = targetsOf(a.Members)
	}
	for _, t := range targets {
		r.Needed = max(r.Needed, w.policy.Policy().For(t).Needed(a.Kinds...))
	}
	got, created, err := w.store.Add(ctx, r, w.cfg.TTL, cardDue)
	if err != nil {
		w.storeFailed(c.ResponseURL, "record the request", err)
		return
	}
	if !created {
		w.again(ctx, c, got)
		return
	}
	kind := string(got.Action)
	if got.Bulk() {
		kind = "bulk-" + kind
	}
	w.metrics.Request(kind)
	w.audit(AuditRequest, c.User, got)
	w.cards.publish(ctx, got, c.ResponseURL)
}

// again answers a request for something that already waits for approval.
// When its card was never recorded — the process that made it stopped, or
// lost the store's reply — and the post is overdue, this click posts it.
func (w *Workflow) again(ctx context.Context, c Click, r request.Request) {
	if r.CardTS == "" {
		if got, err := w.store.Apply(ctx, r.ID, request.Event{Kind: request.Repost, Due: cardDue}); err == nil {
			w.log.Warn("a pending request had no card: posting it again", "request_id", r.ID)
			w.cards.publish(ctx, got, c.ResponseURL)
			return
		}
	}
	what := "this backend"
	if r.Bulk() {
		what = "this set"
	}
	w.Tell(c.ResponseURL, fmt.Sprintf(":information_source: request %s to %s %s is already waiting for approval.", r.ID, r.Action, what))
}

func orAll(scope string) string {
	if scope == "" {
		return "that listing"
	}
	return scope
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
