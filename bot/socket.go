package bot

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/approval"
)

// listen is the only code that touches socketmode: it acks every envelope
// at once (Slack allows 3 s) and hands the work to a handler goroutine. It
// returns when ctx ends: no new events are taken after that.
func (b *Bot) listen(ctx context.Context, client *socketmode.Client) error {
	ack := func(req *socketmode.Request, payload ...any) {
		if err := client.Ack(*req, payload...); err != nil {
			b.log.Error("ack failed", slog.String("envelope_id", req.EnvelopeID), slog.String("error", err.Error()))
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case evt := <-client.Events:
			b.dispatch(evt, ack)
		}
	}
}

// acker acknowledges an envelope, with a payload where Slack reads one.
type acker func(req *socketmode.Request, payload ...any)

// dispatch handles one Socket Mode event. Nothing here or in the handlers it
// starts can stop the process: a panic is recovered (recovered). Nothing
// is answered here but acks: every answer comes from a handler, after the
// policy check.
func (b *Bot) dispatch(evt socketmode.Event, ack acker) {
	defer b.recovered(context.Background(), string(evt.Type), "")
	switch evt.Type {
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || evt.Request == nil {
			return
		}
		if !b.ourTeam(cmd.TeamID, cmd.EnterpriseID) {
			b.foreign(ack, evt.Request, cmd.UserID, cmd.TeamID, "command")
			return
		}
		ack(evt.Request)
		b.handle(string(evt.Type), cmd.ResponseURL, func(ctx context.Context) { b.Command(ctx, cmd) })
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if ok && cb.Type == slack.InteractionTypeViewSubmission && cb.View.CallbackID == blocks.ReasonCallback {
			b.submitted(ack, evt.Request, cb)
			return
		}
		if evt.Request != nil {
			ack(evt.Request)
		}
		if !ok || cb.Type != slack.InteractionTypeBlockActions {
			return
		}
		team := cb.User.TeamID
		if team == "" {
			team = cb.Team.ID
		}
		if !b.ourTeam(team, cb.Enterprise.ID) {
			b.foreign(ack, nil, cb.User.ID, team, "button")
			b.tell(cb.ResponseURL, ":no_entry: pgkill acts only for members of its own workspace.")
			return
		}
		for _, act := range cb.ActionCallback.BlockActions {
			b.handle(string(evt.Type), cb.ResponseURL, func(ctx context.Context) { b.Action(ctx, cb, act.ActionID, act.Value) })
		}
	case socketmode.EventTypeEventsAPI:
		if evt.Request != nil {
			ack(evt.Request)
		}
	case socketmode.EventTypeConnecting:
		b.log.Info("connecting to Slack")
		b.health.setConnected(false)
		b.metrics.SocketDown()
	case socketmode.EventTypeConnected:
		b.log.Info("connected to Slack")
		b.health.setConnected(true)
		b.metrics.SocketUp()
	case socketmode.EventTypeHello:
		if evt.Request != nil {
			b.hello(evt.Request.NumConnections)
		}
	case socketmode.EventTypeConnectionError:
		b.log.Warn("Slack connection error; slack-go retries", slog.Any("detail", evt.Data))
		b.health.setConnected(false)
		b.metrics.SocketDown()
	case socketmode.EventTypeInvalidAuth:
		b.log.Error("Slack refused the app token (invalid_auth)")
	case socketmode.EventTypeIncomingError, socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
		b.log.Warn("Socket Mode error", slog.String("type", string(evt.Type)), slog.Any("detail", evt.Data))
	}
}

// handle runs one envelope's work in its own goroutine (goWork), under a
// deadline (PGKILL_CONNECT_TIMEOUT + 15 s): a handler whose state store,
// database or Slack call stops answering tells its user why rather than
// hanging. What an approval sets in motion — the signal, its verification
// and record — runs past it on its own budget. A panic there is recovered
// like one in dispatch.
func (b *Bot) handle(kind, responseURL string, fn func(ctx context.Context)) {
	b.goWork(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, b.cfg.QueryTimeout())
		defer cancel()
		defer b.recovered(ctx, kind, responseURL)
		fn(ctx)
	})
}

// recovered, deferred, stops a panic in the handling of one envelope from
// stopping the process: it logs it with the envelope's kind and the stack —
// never the payload, which may hold what people typed — counts it, and tells
// the user, when it can, that nothing more was done.
func (b *Bot) recovered(ctx context.Context, kind, responseURL string) {
	r := recover()
	if r == nil {
		return
	}
	what := fmt.Sprintf("%T", r) // a value of the handler's may carry payload text
	if err, ok := r.(runtime.Error); ok {
		what = err.Error()
	}
	b.log.Error("a handler failed and was stopped; nothing more was done for it", slog.String("envelope", kind),
		slog.String("panic", what), slog.String("stack", string(debug.Stack())))
	b.metrics.Panicked(kind)
	if responseURL != "" {
		b.tell(responseURL, ":x: pgkill failed while handling that (an internal error, logged): nothing more was done for it. If it was an approval, its card says what happened.")
	}
}

// submitted answers a reason form: in its ack, Slack's inline errors when
// the reason will not do (the form stays open); else an empty ack closes
// it and the request is made.
func (b *Bot) submitted(ack acker, req *socketmode.Request, cb slack.InteractionCallback) {
	team := cb.User.TeamID
	if team == "" {
		team = cb.Team.ID
	}
	if !b.ourTeam(team, cb.Enterprise.ID) {
		b.foreign(ack, nil, cb.User.ID, team, "reason form")
		if req != nil {
			ack(req, slack.NewErrorsViewSubmissionResponse(map[string]string{blocks.ReasonBlock: "pgkill acts only for members of its own workspace."}))
		}
		return
	}
	if errs := b.ReasonErrors(cb); errs != nil {
		if req != nil {
			ack(req, slack.NewErrorsViewSubmissionResponse(errs))
		}
		return
	}
	if req != nil {
		ack(req)
	}
	b.handle(string(slack.InteractionTypeViewSubmission), "", func(ctx context.Context) { b.Reason(ctx, cb) })
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
func (b *Bot) foreign(ack acker, req *socketmode.Request, user, team, what string) {
	b.log.Info("audit", slog.String("event", approval.AuditRefuse), slog.String("actor", user), slog.String("team", team),
		slog.String("asked", what), slog.String("why", "another workspace"))
	b.metrics.Command("refused")
	if req != nil {
		ack(req, map[string]any{"response_type": "ephemeral", "text": "pgkill acts only for members of its own workspace."})
	}
}
