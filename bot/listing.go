package bot

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/policy"
)

// Command does the work of a parsed /pgkill command after its ack:
// listings and doctor reports. Usage errors, help and targets were answered
// in the ack.
func (b *Bot) Command(ctx context.Context, cmd slack.SlashCommand, q Query) {
	b.log.Info("command", slog.String("user", cmd.UserID), slog.String("channel", cmd.ChannelID), slog.String("kind", q.Kind), slog.String("args", q.Args))
	ctx, cancel := context.WithTimeout(ctx, b.queryTimeout())
	defer cancel()
	shown, withheld, ok := b.viewable(ctx, cmd.ResponseURL, cmd.UserID, cmd.ChannelID, q)
	if !ok {
		return
	}
	q.Targets = shown
	if q.Kind == KindBulk {
		b.BulkCommand(ctx, cmd.ResponseURL, cmd.UserID, cmd.ChannelID, q)
		return
	}
	if q.Kind == KindDoctor { // private to the caller, always
		m := blocks.Doctor(b.db.Doctor(ctx, q.Targets), b.db.Specs())
		_ = b.respond(ctx, cmd.ResponseURL, false, m)
		return
	}
	m := b.listing(ctx, q, withheld)
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
	shown, withheld, ok := b.viewable(ctx, cb.ResponseURL, cb.User.ID, cb.Channel.ID, q)
	if !ok {
		return
	}
	q.Targets = shown
	m := b.listing(ctx, q, withheld)
	if err := b.update(ctx, cb.Channel.ID, cb.Container.MessageTs, m); err != nil {
		b.tell(ctx, cb.ResponseURL, ":x: pgkill could not refresh the listing: "+blocks.Escape(err.Error()))
	}
}

// viewable splits the targets a command asks for (all when none) into
// those user may see from channel and those withheld, each with why. When
// none may be seen it answers the user privately with the reasons, records
// the refusal and returns false.
func (b *Bot) viewable(ctx context.Context, responseURL, user, channel string, q Query) (shown, withheld []string, ok bool) {
	asked := q.Targets
	if len(asked) == 0 {
		asked = b.targets()
	}
	var whys []string
	for _, t := range asked {
		d := b.policy.May(ctx, policy.View, user, channel, t)
		if d.Allowed {
			shown = append(shown, t)
			continue
		}
		withheld = append(withheld, d.Why)
		if !slices.Contains(whys, d.Why) {
			whys = append(whys, d.Why)
		}
	}
	if len(shown) == 0 {
		b.refuse(ctx, responseURL, user, channel, q.Kind, asked, strings.Join(whys, " "))
		return nil, nil, false
	}
	return shown, withheld, true
}

// listing lists q's targets (q.Targets: those the user may see); withheld
// says which the user asked for and may not see here.
func (b *Bot) listing(ctx context.Context, q Query, withheld []string) blocks.Message {
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
	// Cancel all / Terminate all act on exactly what this listing matched.
	l := blocks.Listing{
		Targets: targets, Threshold: q.Threshold, Filters: q.Filters, Args: q.Args, Limit: q.Limit,
		Results: results, Now: b.now(), Withheld: withheld, Roles: roles(b.db),
	}
	if f := freeze(results, strings.TrimSpace(q.Args), b.now()); len(f.Members) >= 2 {
		if id, err := b.sets.put(ctx, f); err != nil {
			b.log.Error("could not keep the listing's set: no Cancel all", slog.String("error", err.Error()))
		} else {
			l.BulkSet, l.BulkCount = id, len(f.Members)
		}
	}
	return blocks.ListingMessage(l)
}

func errText(err error) string {
	if err == nil {
		return "not a listing"
	}
	return err.Error()
}
