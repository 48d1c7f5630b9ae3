package bot

import (
	"context"
	"log/slog"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/pgkill/pgkill/blocks"
)

// listen is the only code that touches socketmode: it acks every envelope
// at once (Slack allows 3 s) and hands the work to a handler goroutine. It
// returns when ctx ends: no new events are taken after that.
func (b *Bot) listen(ctx context.Context, client *socketmode.Client) error {
	for {
		var evt socketmode.Event
		select {
		case <-ctx.Done():
			return nil
		case evt = <-client.Events:
		}
		switch evt.Type {
		case socketmode.EventTypeSlashCommand:
			cmd, ok := evt.Data.(slack.SlashCommand)
			if !ok || evt.Request == nil {
				continue
			}
			if !b.ourTeam(cmd.TeamID, cmd.EnterpriseID) {
				b.foreign(client, evt.Request, cmd.UserID, cmd.TeamID, "command")
				continue
			}
			q, err := ParseCommand(cmd.Text, b.targets(), b.cfg.MinDuration)
			b.metrics.command(commandKind(q, err))
			if m := b.Answer(q, err); m != nil {
				b.ack(client, evt.Request, map[string]any{"response_type": "ephemeral", "text": m.Text, "blocks": m.Blocks})
				continue
			}
			b.ack(client, evt.Request)
			b.goWork(func(ctx context.Context) { b.Command(ctx, cmd, q) })
		case socketmode.EventTypeInteractive:
			cb, ok := evt.Data.(slack.InteractionCallback)
			if ok && cb.Type == slack.InteractionTypeViewSubmission && cb.View.CallbackID == blocks.ReasonCallback {
				b.submitted(client, evt.Request, cb)
				continue
			}
			if evt.Request != nil {
				b.ack(client, evt.Request)
			}
			if !ok || cb.Type != slack.InteractionTypeBlockActions {
				continue
			}
			team := cb.User.TeamID
			if team == "" {
				team = cb.Team.ID
			}
			if !b.ourTeam(team, cb.Enterprise.ID) {
				b.foreign(client, nil, cb.User.ID, team, "button")
				b.goWork(func(ctx context.Context) {
					b.tell(ctx, cb.ResponseURL, ":no_entry: pgkill acts only for members of its own workspace.")
				})
				continue
			}
			for _, act := range cb.ActionCallback.BlockActions {
				b.goWork(func(ctx context.Context) { b.Action(ctx, cb, act.ActionID, act.Value) })
			}
		case socketmode.EventTypeEventsAPI:
			if evt.Request != nil {
				b.ack(client, evt.Request)
			}
		case socketmode.EventTypeConnecting:
			b.log.Info("connecting to Slack")
			b.health.setConnected(false)
			b.metrics.socketDown()
		case socketmode.EventTypeConnected:
			b.log.Info("connected to Slack")
			b.health.setConnected(true)
			b.metrics.socketUp()
		case socketmode.EventTypeHello:
			if evt.Request != nil {
				b.hello(evt.Request.NumConnections)
			}
		case socketmode.EventTypeConnectionError:
			b.log.Warn("Slack connection error; slack-go retries", slog.Any("detail", evt.Data))
			b.health.setConnected(false)
			b.metrics.socketDown()
		case socketmode.EventTypeInvalidAuth:
			b.log.Error("Slack refused the app token (invalid_auth)")
		case socketmode.EventTypeIncomingError, socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
			b.log.Warn("Socket Mode error", slog.String("type", string(evt.Type)), slog.Any("detail", evt.Data))
		}
	}
}

// submitted answers a reason form: in its ack, Slack's inline errors when
// the reason will not do (the form stays open); else an empty ack closes
// it and the request is made.
func (b *Bot) submitted(client *socketmode.Client, req *socketmode.Request, cb slack.InteractionCallback) {
	team := cb.User.TeamID
	if team == "" {
		team = cb.Team.ID
	}
	if !b.ourTeam(team, cb.Enterprise.ID) {
		b.foreign(client, nil, cb.User.ID, team, "reason form")
		if req != nil {
			b.ack(client, req, slack.NewErrorsViewSubmissionResponse(map[string]string{blocks.ReasonBlock: "pgkill acts only for members of its own workspace."}))
		}
		return
	}
	if errs := b.ReasonErrors(cb); errs != nil {
		if req != nil {
			b.ack(client, req, slack.NewErrorsViewSubmissionResponse(errs))
		}
		return
	}
	if req != nil {
		b.ack(client, req)
	}
	b.goWork(func(ctx context.Context) { b.Reason(ctx, cb) })
}

// ourTeam reports whether a payload comes from the workspace (or the
// Enterprise Grid organisation) the app token belongs to.
func (b *Bot) ourTeam(team, org string) bool {
	if b.team == "" { // not known (a bot built without Serve, in tests)
		return true
	}
	if org != "" && b.org != "" {
		return org == b.org
	}
	return team == b.team
}

// foreign refuses a payload from another workspace: privately, recorded.
func (b *Bot) foreign(client *socketmode.Client, req *socketmode.Request, user, team, what string) {
	b.log.Info("audit", slog.String("event", AuditRefuse), slog.String("actor", user), slog.String("team", team),
		slog.String("asked", what), slog.String("why", "another workspace"))
	b.metrics.command("refused")
	if req != nil {
		b.ack(client, req, map[string]any{"response_type": "ephemeral", "text": "pgkill acts only for members of its own workspace."})
	}
}

func (b *Bot) ack(client *socketmode.Client, req *socketmode.Request, payload ...any) {
	if err := client.Ack(*req, payload...); err != nil {
		b.log.Error("ack failed", slog.String("envelope_id", req.EnvelopeID), slog.String("error", err.Error()))
	}
}

// Action routes a button press by its action_id.
func (b *Bot) Action(ctx context.Context, cb slack.InteractionCallback, actionID, value string) {
	b.log.Info("button", slog.String("user", cb.User.ID), slog.String("action_id", actionID), slog.String("channel", cb.Channel.ID))
	switch actionID {
	case blocks.ActionCancel, blocks.ActionTerminate, blocks.ActionRequestTerminate:
		b.Request(ctx, cb, value)
	case blocks.ActionBulkCancel, blocks.ActionBulkTerminate:
		b.BulkClick(ctx, clickOf(cb, value))
	case blocks.ActionBulkNext:
		b.BulkNext(ctx, clickOf(cb, value))
	case blocks.ActionApprove:
		b.Approve(ctx, cb, value)
	case blocks.ActionDeny:
		b.Deny(ctx, cb, value)
	case blocks.ActionWithdraw:
		b.Withdraw(ctx, cb, value)
	case blocks.ActionRefresh:
		b.Refresh(ctx, cb, value)
	default:
		b.log.Warn("unknown action", slog.String("action_id", actionID))
	}
}
