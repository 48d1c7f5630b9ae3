package bot

import (
	"context"
	"log/slog"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
)

// Command does the work of a parsed /pgkill command after its ack:
// listings and doctor reports. Usage errors, help and targets were answered
// in the ack.
func (b *Bot) Command(ctx context.Context, cmd slack.SlashCommand, q Query) {
	b.log.Info("command", slog.String("user", cmd.UserID), slog.String("channel", cmd.ChannelID), slog.String("kind", q.Kind), slog.String("args", q.Args))
	ctx, cancel := context.WithTimeout(ctx, b.queryTimeout())
	defer cancel()
	if q.Kind == KindDoctor {
		m := blocks.Doctor(b.db.Doctor(ctx, q.Targets))
		_ = b.respond(ctx, cmd.ResponseURL, false, m)
		return
	}
	m := b.listing(ctx, q)
	// Posted in the channel: incident responders share it, and its ts lets
	// Refresh update it and approvals thread under it. Where the bot may not
	// post (not a member, a DM), the response_url still can.
	if _, err := b.post(ctx, cmd.ChannelID, "", m); err != nil {
		if err := b.respond(ctx, cmd.ResponseURL, true, m); err != nil {
			b.tell(ctx, cmd.ResponseURL, ":x: pgkill could not post the listing: "+blocks.Escape(err.Error()))
		}
	}
}

// Refresh re-runs the listing a Refresh button belongs to, in place.
func (b *Bot) Refresh(ctx context.Context, cb slack.InteractionCallback, args string) {
	q, err := ParseCommand(args, b.targets(), b.cfg.MinDuration)
	if err != nil || q.Kind != KindList {
		b.tell(ctx, cb.ResponseURL, ":warning: this listing can no longer be refreshed ("+blocks.Escape(errText(err))+"); run the command again.")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.queryTimeout())
	defer cancel()
	m := b.listing(ctx, q)
	if err := b.update(ctx, cb.Channel.ID, cb.Container.MessageTs, m); err != nil {
		b.tell(ctx, cb.ResponseURL, ":x: pgkill could not refresh the listing: "+blocks.Escape(err.Error()))
	}
}

func (b *Bot) listing(ctx context.Context, q Query) blocks.Message {
	targets := q.Targets
	if len(targets) == 0 {
		targets = b.targets()
	}
	start := time.Now()
	results := b.db.List(ctx, q.Targets, q.Filter)
	took := time.Since(start)
	for _, r := range results {
		b.metrics.listed(r.Target, took, r.Err == nil)
		b.health.checked(r.Target, r.Err, b.now())
		if r.Err != nil {
			b.log.Warn("target could not be listed", slog.String("target", r.Target), slog.String("error", r.Err.Error()))
		}
	}
	return blocks.ListingMessage(blocks.Listing{
		Targets: targets, Threshold: q.Threshold, Filters: q.Filters, Args: q.Args, Limit: q.Limit,
		Results: results, Now: b.now(),
	})
}

func errText(err error) string {
	if err == nil {
		return "not a listing"
	}
	return err.Error()
}
