package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/pg"
)

// click is what a request needs of the button press that made it: who,
// where, and how to answer them privately.
type click struct {
	User        string `json:"u"`
	Channel     string `json:"c"`
	Thread      string `json:"t"` // the listing or alert the card threads under
	ResponseURL string `json:"r"`
	Value       string `json:"v"` // the button's value (blocks.EncodeSignal or EncodeBulk)
	TriggerID   string `json:"-"` // opens the reason form; Slack's expire in 3 s, so never kept
}

func clickOf(cb slack.InteractionCallback, value string) click {
	thread := cb.Container.ThreadTs
	if thread == "" {
		thread = cb.Message.ThreadTimestamp
	}
	if thread == "" {
		thread = cb.Container.MessageTs
	}
	return click{User: cb.User.ID, Channel: cb.Channel.ID, Thread: thread, ResponseURL: cb.ResponseURL, Value: value, TriggerID: cb.TriggerID}
}

// Request handles a Cancel or Terminate click: it checks the requester and
// that the backend still runs the listed query; then it asks for a reason
// (PGKILL_REASON) in a modal, or posts the approval card in the thread at
// once. Nothing is signalled here.
func (b *Bot) Request(ctx context.Context, cb slack.InteractionCallback, value string) {
	c := clickOf(cb, value)
	sig, cur, ok := b.requestable(ctx, c)
	if !ok {
		return
	}
	ask, required := b.reasons.Ask(string(sig.Action))
	cur.Identity = sig.Identity
	if ask && b.askReason(ctx, c, blocks.ReasonPrompt{Action: sig.Action, Backend: cur, Required: required}) {
		return
	}
	b.record(ctx, c, sig, cur, "") // just checked: no second read
}

// askReason opens the reason form for a click: Cancel or Terminate (the
// prompt's Backend) or Cancel all / Terminate all (its Members and Scope).
// The click travels in the form's private_metadata. It reports whether the
// click is dealt with — the form is open, or it could not be opened and a
// reason is required, which the user is told; false: a reason is welcome,
// not needed, so make the request without one rather than lose it.
func (b *Bot) askReason(ctx context.Context, c click, p blocks.ReasonPrompt) bool {
	meta, _ := json.Marshal(c)
	p.Metadata = string(meta)
	err := b.slackCall(ctx, "views.open", func(ctx context.Context) error {
		_, err := b.slack.OpenViewContext(ctx, c.TriggerID, blocks.ReasonModal(p))
		return err
	})
	switch {
	case err == nil:
		return true
	case p.Required:
		b.tell(ctx, c.ResponseURL, ":x: pgkill could not open the form for the reason ("+blocks.Escape(err.Error())+"); press the button again. Nothing was requested.")
		return true
	}
	return false
}

// Reason handles the reason modal's submission; the view was validated and
// acknowledged already (ReasonErrors).
func (b *Bot) Reason(ctx context.Context, cb slack.InteractionCallback) {
	var c click
	if err := json.Unmarshal([]byte(cb.View.PrivateMetadata), &c); err != nil || c.User != cb.User.ID {
		b.log.Warn("a reason form pgkill cannot read", slog.String("user", cb.User.ID))
		return
	}
	if v, err := blocks.DecodeBulk(c.Value); err == nil {
		b.bulkClick(ctx, c, v, reasonOf(cb))
		return
	}
	b.request(ctx, c, reasonOf(cb))
}

// ReasonErrors checks a submitted reason form: the errors to show under its
// input (Slack's response_action: errors), or nil to accept it.
func (b *Bot) ReasonErrors(cb slack.InteractionCallback) map[string]string {
	var c click
	if json.Unmarshal([]byte(cb.View.PrivateMetadata), &c) != nil {
		return map[string]string{blocks.ReasonBlock: "This form is not one pgkill can read; close it and press the button again."}
	}
	var kinds []string
	if v, err := blocks.DecodeBulk(c.Value); err == nil {
		kinds = policy.KindsOf(string(v.Action), true)
	} else {
		sig, err := blocks.DecodeSignal(c.Value)
		if err != nil {
			return map[string]string{blocks.ReasonBlock: "This form is not one pgkill can read; close it and press the button again."}
		}
		kinds = policy.KindsOf(string(sig.Action), false)
	}
	reason := reasonOf(cb)
	if _, required := b.reasons.Ask(kinds...); !required && reason == "" {
		return nil
	}
	if err := policy.CheckReason(reason); err != nil {
		return map[string]string{blocks.ReasonBlock: capitalizeFirst(err.Error()) + "."}
	}
	return nil
}

func reasonOf(cb slack.InteractionCallback) string {
	return cb.View.State.Values[blocks.ReasonBlock][blocks.ReasonAction].Value
}

// requestable checks a click before anything is asked or recorded: the
// value, the policy, and that the backend still runs the listed statement
// and may be signalled. It answers the user itself when not.
func (b *Bot) requestable(ctx context.Context, c click) (blocks.Signal, pg.Backend, bool) {
	sig, err := blocks.DecodeSignal(c.Value)
	if err != nil {
		b.tell(ctx, c.ResponseURL, ":warning: that button is not one pgkill understands; run the command again.")
		return sig, pg.Backend{}, false
	}
	if d := b.policy.May(ctx, policy.Request, c.User, c.Channel, sig.Target); !d.Allowed {
		b.refuse(ctx, c.ResponseURL, c.User, c.Channel, string(sig.Action), []string{sig.Target}, d.Why)
		return sig, pg.Backend{}, false
	}
	cur, err := b.db.Backend(ctx, sig.Target, sig.PID)
	switch {
	case errors.Is(err, pg.ErrNotFound) || (err == nil && !sameExecution(cur.Identity, sig.Identity)):
		b.tell(ctx, c.ResponseURL, fmt.Sprintf(":information_source: pid %d on %s is no longer running that query: nothing to approve. Press *Refresh* for the current state.", sig.PID, blocks.Escape(sig.Target)))
		return sig, cur, false
	case errors.Is(err, errLeftFleet):
		b.tell(ctx, c.ResponseURL, ":information_source: "+blocks.Escape(err.Error())+": nothing to request, nothing was signalled. Run the command again for the current targets.")
		return sig, cur, false
	case err != nil:
		b.tell(ctx, c.ResponseURL, ":x: could not read the backend: "+blocks.Escape(err.Error()))
		return sig, cur, false
	case cur.State == "idle": // the same answer for cancel and terminate: there is nothing to end
		b.tell(ctx, c.ResponseURL, fmt.Sprintf(":information_source: pid %d on %s finished that query and is idle, outside any transaction: nothing is running, so there is nothing to end. pgkill spares idle sessions on purpose.", sig.PID, blocks.Escape(sig.Target)))
		return sig, cur, false
	case !cur.Signallable():
		b.tell(ctx, c.ResponseURL, ":lock: pgkill will not signal this backend: "+blocks.Escape(cur.Protected))
		return sig, cur, false
	case sig.Action == pg.Cancel && cur.State != pg.StateActive:
		b.tell(ctx, c.ResponseURL, ":information_source: the session is "+string(cur.State)+": cancel would do nothing there. Use *Terminate*.")
		return sig, cur, false
	}
	return sig, cur, true
}

// request records a request for the click and posts its approval card in
// the thread. The backend is read again: time may have passed in the form.
func (b *Bot) request(ctx context.Context, c click, reason string) {
	if sig, cur, ok := b.requestable(ctx, c); ok {
		b.record(ctx, c, sig, cur, reason)
	}
}

// record records a request for a checked click (requestable) and posts its
// approval card.
func (b *Bot) record(ctx context.Context, c click, sig blocks.Signal, cur pg.Backend, reason string) {
	cur.Identity = sig.Identity // the identity that was shown is the one approved
	now := b.now()
	a, created, err := b.requests.add(ctx, Approval{
		Action: sig.Action, Backend: cur, Requester: c.User, Reason: reason, Channel: c.Channel, ThreadTS: c.Thread,
		Requested: now, Expires: now.Add(b.cfg.ApprovalTTL),
		Needed: b.policy.Policy().For(sig.Target).Needed(string(sig.Action)),
	})
	if err != nil {
		b.storeFailed(ctx, c.ResponseURL, "record the request", err)
		return
	}
	if !created {
		b.tell(ctx, c.ResponseURL, fmt.Sprintf(":information_source: request %s to %s this backend is already waiting for approval.", a.ID, a.Action))
		return
	}
	b.metrics.request(string(a.Action))
	b.publish(ctx, c, a, nil)
}

// publish records a new request's audit line and posts its card (and, for
// a bulk request, the whole list in its thread). A card that cannot be
// posted withdraws the request — nobody could approve it — and says so.
func (b *Bot) publish(ctx context.Context, c click, a Approval, thread []blocks.Message) {
	b.audit(ctx, AuditRequest, c.User, a)
	ts, err := b.post(ctx, a.Channel, a.ThreadTS, b.card(a))
	if err != nil {
		if a, ok, _ := b.requests.transition(ctx, a.ID, Pending, Withdrawn, func(x *Approval) error { x.Decided = b.now(); return nil }); ok {
			b.audit(ctx, AuditWithdraw, "", a)
		}
		b.tell(ctx, c.ResponseURL, ":x: pgkill could not post the approval request, so it is withdrawn: "+blocks.Escape(err.Error()))
		return
	}
	if err := b.requests.update(ctx, a.ID, func(x *Approval) { x.CardTS = ts }); err != nil {
		b.log.Error("could not record the card of a request", slog.String("request_id", a.ID), slog.String("error", err.Error()))
	} else {
		b.log.Info("card recorded", slog.String("request_id", a.ID), slog.String("ts", ts))
	}
	under := a.ThreadTS
	if under == "" {
		under = ts
	}
	for _, m := range thread {
		if _, err := b.post(ctx, a.Channel, under, m); err != nil {
			break // the card says how many; the list is a convenience
		}
	}
	// A click may have decided (or approved, of several approvals) the
	// request while its card was being posted, before its ts was known:
	// show that now.
	if cur, ok, _ := b.requests.get(ctx, a.ID); ok && (cur.State != Pending || len(cur.Votes) > 0) {
		b.refreshCard(ctx, cur)
	}
}

func capitalizeFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
