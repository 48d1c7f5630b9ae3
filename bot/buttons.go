package bot

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/approval"
)

// Action routes a button press by its action_id.
func (b *Bot) Action(ctx context.Context, cb slack.InteractionCallback, actionID, value string) {
	b.log.Info("button", slog.String("user", cb.User.ID), slog.String("action_id", actionID), slog.String("channel", cb.Channel.ID))
	c := clickOf(cb, value)
	switch actionID {
	case blocks.ActionCancel, blocks.ActionTerminate, blocks.ActionRequestTerminate, blocks.ActionBulkCancel, blocks.ActionBulkTerminate:
		b.clicked(ctx, c)
	case blocks.ActionBulkNext:
		if next, ok := b.flow.Next(ctx, c, value); ok {
			b.clicked(ctx, next)
		}
	case blocks.ActionApprove:
		b.flow.Approve(ctx, c, value)
	case blocks.ActionDeny:
		b.flow.Deny(ctx, c, value)
	case blocks.ActionStop:
		b.flow.Autopilot().Stop(ctx, c, value)
	case blocks.ActionWithdraw:
		b.flow.Withdraw(ctx, c, value)
	case blocks.ActionRefresh:
		b.refresh(ctx, cb, value)
	default:
		b.log.Warn("unknown action", slog.String("action_id", actionID))
	}
}

// clickOf is what the workflow needs of a button press.
func clickOf(cb slack.InteractionCallback, value string) approval.Click {
	thread := cb.Container.ThreadTs
	if thread == "" {
		thread = cb.Message.ThreadTimestamp
	}
	if thread == "" {
		thread = cb.Container.MessageTs
	}
	return approval.Click{User: cb.User.ID, Channel: cb.Channel.ID, Thread: thread, MessageTS: cb.Container.MessageTs,
		ResponseURL: cb.ResponseURL, Value: value, TriggerID: cb.TriggerID}
}

// clicked handles Cancel, Terminate, Cancel all and Terminate all: the
// workflow checks the click; then the reason form opens where
// PGKILL_REASON asks for one (the submission makes the request), or the
// request is made at once. Nothing is signalled here.
func (b *Bot) clicked(ctx context.Context, c approval.Click) {
	a, ok := b.flow.Check(ctx, c)
	if !ok {
		return
	}
	if ask, required := b.flow.Reason(a); ask && b.askReason(ctx, c, a.Prompt(required)) {
		return
	}
	b.flow.Make(ctx, c, a, "")
}

// askReason opens the reason form for a click; the click travels in the
// form's private_metadata. It reports whether the click is dealt with —
// the form is open, or it could not be opened and a reason is required,
// which the user is told; false: a reason is welcome, not needed, so make
// the request without one rather than lose it.
func (b *Bot) askReason(ctx context.Context, c approval.Click, p blocks.ReasonPrompt) bool {
	meta, _ := json.Marshal(c)
	p.Metadata = string(meta)
	err := call(ctx, b.metrics, "views.open", func(ctx context.Context) error {
		_, err := b.slack.OpenViewContext(ctx, c.TriggerID, blocks.ReasonModal(p))
		return err
	})
	switch {
	case err == nil:
		return true
	case p.Required:
		b.tell(c.ResponseURL, ":x: pgkill could not open the form for the reason ("+blocks.Escape(err.Error())+"); press the button again. Nothing was requested.")
		return true
	}
	return false
}

// formClick reads the click a reason form carries, checking that its
// submitter is the one who clicked.
func formClick(cb slack.InteractionCallback) (approval.Click, bool) {
	var c approval.Click
	if err := json.Unmarshal([]byte(cb.View.PrivateMetadata), &c); err != nil || c.User != cb.User.ID {
		return c, false
	}
	return c, true
}

func reasonOf(cb slack.InteractionCallback) string {
	if cb.View.State == nil {
		return ""
	}
	return cb.View.State.Values[blocks.ReasonBlock][blocks.ReasonAction].Value
}

const unreadableForm = "This form is not one pgkill can read; close it and press the button again."

// ReasonErrors checks a submitted reason form: the errors to show under its
// input (Slack's response_action: errors), or nil to accept it.
func (b *Bot) ReasonErrors(cb slack.InteractionCallback) map[string]string {
	c, ok := formClick(cb)
	if !ok {
		return map[string]string{blocks.ReasonBlock: unreadableForm}
	}
	a, ok := approval.Kinds(c.Value)
	if !ok {
		return map[string]string{blocks.ReasonBlock: unreadableForm}
	}
	if why := b.flow.ReasonProblem(a, reasonOf(cb)); why != "" {
		return map[string]string{blocks.ReasonBlock: why}
	}
	return nil
}

// Reason handles the reason form's submission, validated and acknowledged
// already (ReasonErrors): the click is checked again — time passed in the
// form — and the request made.
func (b *Bot) Reason(ctx context.Context, cb slack.InteractionCallback) {
	c, ok := formClick(cb)
	if !ok {
		b.log.Warn("a reason form pgkill cannot read", slog.String("user", cb.User.ID))
		return
	}
	if a, ok := b.flow.Check(ctx, c); ok {
		b.flow.Make(ctx, c, a, reasonOf(cb))
	}
}
