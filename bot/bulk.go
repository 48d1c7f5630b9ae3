package bot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/pg"
)

// frozen is the set of backends a listing matched, kept so that its
// Cancel all / Terminate all buttons act on exactly that set — not on the
// sessions that match when the button is pressed.
type frozen struct {
	Scope   string         // the filter that made it, as the user gave it
	Members []pg.Backend   // every signallable backend it matched
	Left    map[string]int // matched but never offered, by why
	At      time.Time
}

// sets keeps frozen sets: in the state store when there is one (any
// replica may get the click), else in memory. Sets older than a day are
// forgotten with decided requests.
type sets interface {
	put(ctx context.Context, f frozen) (string, error)
	get(ctx context.Context, id string) (frozen, bool, error)
}

type memSets struct {
	mu  sync.Mutex
	seq int
	m   map[string]frozen
}

func (s *memSets) put(_ context.Context, f frozen) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]frozen{}
	}
	for id, old := range s.m {
		if f.At.Sub(old.At) > keepDecided {
			delete(s.m, id)
		}
	}
	s.seq++
	id := "S" + strconv.Itoa(s.seq)
	s.m[id] = f
	return id, nil
}

func (s *memSets) get(_ context.Context, id string) (frozen, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.m[id]
	return f, ok, nil
}

type storedSets struct{ store StateStore }

func (s storedSets) put(ctx context.Context, f frozen) (string, error) {
	doc, err := json.Marshal(f)
	if err != nil {
		return "", err
	}
	id, err := s.store.PutSet(ctx, doc)
	return "S" + strconv.FormatInt(id, 10), err
}

func (s storedSets) get(ctx context.Context, id string) (frozen, bool, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "S"), 10, 64)
	if err != nil || !strings.HasPrefix(id, "S") {
		return frozen{}, false, nil
	}
	doc, ok, err := s.store.Set(ctx, n)
	if err != nil || !ok {
		return frozen{}, false, err
	}
	var f frozen
	return f, true, json.Unmarshal(doc, &f)
}

// freeze keeps of a listing what a bulk request may act on: the
// signallable backends, with their query text cut (the card shows a few
// lines; the identity is what is signalled), and a count of the others.
func freeze(ls []pg.Listing, scope string, now time.Time) frozen {
	f := frozen{Scope: scope, Left: map[string]int{}, At: now}
	for _, b := range pg.Merge(ls) {
		if !b.Signallable() {
			f.Left["not signallable ("+leftReason(b.Protected)+")"]++
			continue
		}
		b.Query = blocks.Truncate(b.Query, 300)
		f.Members = append(f.Members, b)
	}
	return f
}

func leftReason(protected string) string {
	if i := strings.IndexAny(protected, ":("); i > 0 {
		return strings.TrimSpace(protected[:i])
	}
	return protected
}

// forAction keeps the members action can act on: cancel does nothing to a
// session idle in a transaction.
func (f frozen) forAction(action pg.Action) ([]pg.Backend, map[string]int) {
	left := map[string]int{}
	for k, v := range f.Left {
		left[k] = v
	}
	var out []pg.Backend
	for _, m := range f.Members {
		if action == pg.Cancel && m.State.Idle() {
			left["idle in a transaction (cancel does nothing there)"]++
			continue
		}
		out = append(out, m)
	}
	return out, left
}

// BulkCommand handles `/pgkill cancel|terminate …`: it lists what matches
// now, freezes that set and asks for approval of it. q.Targets are the
// targets the user may see (Command checked them).
func (b *Bot) BulkCommand(ctx context.Context, responseURL, user, channel string, q Query) {
	scope := strings.TrimSpace(fmt.Sprintf("%s ≥ %s %s", strings.Join(q.Targets, " "), blocks.Duration(q.Threshold), q.Filters))
	if why := b.bulkReasonProblem(q.Action, q.Reason, scope); why != "" {
		b.tell(ctx, responseURL, why)
		return
	}
	ls := b.db.List(ctx, q.Targets, q.Filter)
	var failed []string
	for _, l := range ls {
		if l.Err != nil {
			failed = append(failed, l.Target+": "+l.Err.Error())
		}
	}
	if len(failed) > 0 {
		b.tell(ctx, responseURL, ":x: nothing was requested: "+blocks.Escape(strings.Join(failed, "; "))+". A bulk request needs every target it names to answer; name the targets that do.")
		return
	}
	c := click{User: user, Channel: channel, ResponseURL: responseURL}
	b.bulkRequest(ctx, c, q.Action, freeze(ls, scope, b.now()), q.Reason)
}

// BulkClick handles Cancel all / Terminate all on a listing or an alert
// summary: the set it matched, frozen when it was posted. When PGKILL_REASON
// asks for one, the reason form opens first (Reason makes the request).
func (b *Bot) BulkClick(ctx context.Context, c click) {
	v, err := blocks.DecodeBulk(c.Value)
	if err != nil {
		b.tell(ctx, c.ResponseURL, ":warning: that button is not one pgkill understands; run the command again.")
		return
	}
	ask, required := b.reasons.Ask(policy.KindsOf(string(v.Action), true)...)
	if !ask {
		b.bulkClick(ctx, c, v, "")
		return
	}
	f, ok := b.frozenSet(ctx, c, v)
	if !ok {
		return
	}
	members, _ := f.forAction(v.Action)
	if len(members) == 0 || len(members) > b.cfg.bulkMax() {
		b.bulkRequest(ctx, c, v.Action, f, "") // refused with why, before any form
		return
	}
	if b.askReason(ctx, c, blocks.ReasonPrompt{Action: v.Action, Members: len(members), Scope: orAll(f.Scope), Required: required}) {
		return
	}
	b.bulkRequest(ctx, c, v.Action, f, "")
}

// bulkClick makes the request of a Cancel all / Terminate all click, with
// the reason given in its form, if any.
func (b *Bot) bulkClick(ctx context.Context, c click, v blocks.Bulk, reason string) {
	if f, ok := b.frozenSet(ctx, c, v); ok {
		b.bulkRequest(ctx, c, v.Action, f, reason)
	}
}

// frozenSet reads the set a bulk button names; it tells the user when it
// cannot.
func (b *Bot) frozenSet(ctx context.Context, c click, v blocks.Bulk) (frozen, bool) {
	f, ok, err := b.sets.get(ctx, v.SetID)
	switch {
	case err != nil:
		b.storeFailed(ctx, c.ResponseURL, "read the listing's set", err)
		return f, false
	case !ok:
		b.tell(ctx, c.ResponseURL, ":information_source: pgkill no longer knows the sessions of that listing (over a day old, or a restart without a state store): press *Refresh* and try again. Nothing was requested.")
		return f, false
	}
	return f, true
}

// bulkRequest records a request to signal a frozen set, and posts its card
// and, in the card's thread, the whole list.
func (b *Bot) bulkRequest(ctx context.Context, c click, action pg.Action, f frozen, reason string) {
	members, left := f.forAction(action)
	if len(members) == 0 {
		b.tell(ctx, c.ResponseURL, fmt.Sprintf(":information_source: no session of %s can be %sed: nothing was requested.", blocks.Escape(orAll(f.Scope)), action))
		return
	}
	if max := b.cfg.bulkMax(); len(members) > max {
		b.tell(ctx, c.ResponseURL, fmt.Sprintf(":no_entry: %d sessions match, more than one request may end (PGKILL_BULK_MAX=%d). Narrow it — a target, db=, user=, app=, a longer duration — or raise PGKILL_BULK_MAX. Nothing was requested.", len(members), max))
		return
	}
	a := Approval{Action: action, Members: members, Scope: f.Scope, Left: left, Backend: pg.Backend{Identity: pg.Identity{Target: members[0].Target}}}
	// A bulk request holds to the strictest of its kind's rules and its
	// action's: bulk terminate needs what a terminate needs, at least.
	kinds := policy.KindsOf(string(action), true)
	needed := 1
	for _, t := range a.targets() {
		if d := b.policy.May(ctx, policy.Request, c.User, c.Channel, t); !d.Allowed {
			b.refuse(ctx, c.ResponseURL, c.User, c.Channel, "bulk "+string(action), a.targets(), d.Why)
			return
		}
		needed = max(needed, b.policy.Policy().For(t).Needed(kinds...))
	}
	if why := b.bulkReasonProblem(action, reason, f.Scope); why != "" {
		b.tell(ctx, c.ResponseURL, why)
		return
	}
	now := b.now()
	a.Requester, a.Reason, a.Channel, a.ThreadTS = c.User, reason, c.Channel, c.Thread
	a.Requested, a.Expires, a.Needed = now, now.Add(b.cfg.ApprovalTTL), needed
	a, created, err := b.requests.add(ctx, a)
	if err != nil {
		b.storeFailed(ctx, c.ResponseURL, "record the request", err)
		return
	}
	if !created {
		b.tell(ctx, c.ResponseURL, fmt.Sprintf(":information_source: request %s to %s this set is already waiting for approval.", a.ID, a.Action))
		return
	}
	b.metrics.request("bulk-" + string(a.Action))
	b.publish(ctx, c, a, blocks.MemberList(a.ID, a.Members))
}

// bulkReasonProblem says what is wrong with the reason of a bulk request
// (required and missing, or given and not a reason: an optional reason,
// when given, is held to the same rule), or "".
func (b *Bot) bulkReasonProblem(action pg.Action, reason, scope string) string {
	_, required := b.reasons.Ask(policy.KindsOf(string(action), true)...)
	how := fmt.Sprintf("`%s %s %s reason=\"…\"` (a few words or an incident link)", b.cfg.Command, action, blocks.Escape(scope))
	switch err := policy.CheckReason(reason); {
	case required && reason == "":
		return fmt.Sprintf(":pencil: a bulk %s needs a reason here: %s. Nothing was requested.", action, how)
	case reason != "" && err != nil:
		return fmt.Sprintf(":pencil: that reason will not do: %s. Write %s. Nothing was requested.", blocks.Escape(err.Error()), how)
	}
	return ""
}

// BulkNext handles "Terminate the N still running" on a bulk cancel's
// outcome: a new request, with its own approval, for exactly those.
func (b *Bot) BulkNext(ctx context.Context, cb slack.InteractionCallback, c click) {
	a, ok, err := b.requests.get(ctx, c.Value)
	if err != nil || !ok {
		b.tell(ctx, c.ResponseURL, unknownRequest)
		return
	}
	if !b.onCard(ctx, cb, a) {
		return
	}
	still := blocks.StillRunning(a.Members, a.Results)
	f := frozen{Scope: fmt.Sprintf("the %d still running after %s", len(still), a.ID), Members: still, At: b.now()}
	c.Thread = a.ThreadTS
	if c.Thread == "" {
		c.Thread = a.CardTS
	}
	// A new request like any Terminate all: its requester gives their own
	// reason when one is asked for (the form, as for the buttons).
	id, err := b.sets.put(ctx, f)
	if err != nil {
		b.storeFailed(ctx, c.ResponseURL, "keep the sessions still running", err)
		return
	}
	c.Value = blocks.EncodeBulk(blocks.Bulk{Action: pg.Terminate, SetID: id})
	b.BulkClick(ctx, c)
}

// executeBulk signals every member of an approved bulk request — one
// statement per target, the identity checked for each member in it — then
// verifies them together, and records the outcome.
func (b *Bot) executeBulk(ctx context.Context, a Approval) Approval {
	ids := make([]pg.Identity, len(a.Members))
	for i, m := range a.Members {
		ids[i] = m.Identity
	}
	outs, errs := b.db.SignalSet(ctx, a.Action, ids)
	results := make([]blocks.MemberOutcome, len(ids))
	var sent []pg.Outcome
	var at []int
	for i := range ids {
		results[i].Outcome = outs[i]
		if errs[i] != nil {
			results[i].Err = errs[i].Error()
			continue
		}
		if outs[i].Result == pg.Sent {
			sent, at = append(sent, outs[i]), append(at, i)
		}
	}
	if len(sent) > 0 {
		vs, verrs := b.db.VerifySet(ctx, sent, b.cfg.VerifyTimeout)
		for j, i := range at {
			results[i].Verified = vs[j]
			if verrs[j] != nil { // sent: only watching it failed
				results[i].VerifyErr = verrs[j].Error()
			}
		}
	}
	return b.finish(ctx, a, func(x *Approval) { x.Results = results })
}

// keepSet keeps f for Cancel all / Terminate all buttons: its ID and size,
// or "" (no buttons) when it has no member or could not be kept.
func (b *Bot) keepSet(ctx context.Context, f frozen) (string, int) {
	if len(f.Members) == 0 {
		return "", 0
	}
	id, err := b.sets.put(ctx, f)
	if err != nil {
		b.log.Error("could not keep a set of sessions: no Cancel all", slog.String("error", err.Error()))
		return "", 0
	}
	return id, len(f.Members)
}

// floodScope names the set of an alert summary, as its bulk card shows it.
func floodScope(target string, n int, at time.Time) string {
	return fmt.Sprintf("the %d runaway queries of the alert summary on %s at %s UTC", n, target, at.UTC().Format("15:04:05"))
}

func (c Config) bulkMax() int {
	if c.BulkMax > 0 {
		return c.BulkMax
	}
	return 1000
}

func orAll(scope string) string {
	if scope == "" {
		return "that listing"
	}
	return scope
}

// bulkDedup names one action on one frozen set.
func bulkDedup(action pg.Action, members []pg.Backend) string {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = dedupKey(action, m.Identity)
	}
	slices.Sort(ids)
	h := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return "bulk|" + string(action) + "|" + hex.EncodeToString(h[:16])
}
