package bot

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/pg"
)

// Command answers a /pgkill command after its ack. Every answer comes
// after the policy check and names only the targets this person may see
// here: a usage error, help, targets, a listing, a doctor report or a bulk
// request.
func (b *Bot) Command(ctx context.Context, cmd slack.SlashCommand) {
	q, err := ParseCommand(cmd.Text, b.targets(), b.cfg.MinDuration)
	b.metrics.command(commandKind(q, err))
	b.log.Info("command", slog.String("user", cmd.UserID), slog.String("channel", cmd.ChannelID), slog.String("kind", commandKind(q, err)))
	ctx, cancel := context.WithTimeout(ctx, b.queryTimeout())
	defer cancel()
	var asked []string
	if err == nil {
		asked = q.Targets
	}
	shown, withheld, ok := b.viewable(ctx, cmd.ResponseURL, cmd.UserID, cmd.ChannelID, commandKind(q, err), asked)
	if !ok {
		return
	}
	if m := b.answer(q, err, shown); m != nil {
		_ = b.respond(ctx, cmd.ResponseURL, false, *m)
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

// answer is the private answer to a command that needs no database: a
// usage error, help or the targets, naming only the targets shown (those the
// user may see here). It is nil when the command is a listing, doctor or
// bulk request.
func (b *Bot) answer(q Query, err error, shown []string) *blocks.Message {
	var m blocks.Message
	switch {
	case err != nil:
		msg := err.Error()
		var u unknownWord
		if errors.As(err, &u) {
			msg += " (targets: " + strings.Join(shown, ", ") + ")"
		}
		m = blocks.UsageError(b.cfg.Command, msg)
	case q.Kind == KindHelp:
		m = blocks.Help(b.cfg.Command, shown, b.cfg.MinDuration)
	case q.Kind == KindTargets:
		var specs []pg.TargetSpec
		for _, s := range b.db.Specs() {
			if slices.Contains(shown, s.Name) {
				specs = append(specs, s)
			}
		}
		m = blocks.Targets(specs)
	default:
		return nil
	}
	return &m
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
	shown, withheld, ok := b.viewable(ctx, cb.ResponseURL, cb.User.ID, cb.Channel.ID, "refresh", q.Targets)
	if !ok {
		return
	}
	q.Targets = shown
	m := b.listing(ctx, q, withheld)
	if err := b.update(ctx, cb.Channel.ID, cb.Container.MessageTs, m); err != nil {
		b.tell(ctx, cb.ResponseURL, ":x: pgkill could not refresh the listing: "+blocks.Escape(err.Error()))
	}
}

// viewable splits the targets a command asks for into those user may see
// from channel and those withheld, each with why; asked empty means every
// target user may see here, and then nothing is said of the others. When
// none may be seen it answers the user privately with the reasons (naming
// only targets the user asked for), records the refusal and returns false.
func (b *Bot) viewable(ctx context.Context, responseURL, user, channel, what string, asked []string) (shown, withheld []string, ok bool) {
	visible, d := b.policy.Visible(ctx, user, channel, b.targets())
	if len(visible) == 0 {
		b.refuse(ctx, responseURL, user, channel, what, asked, d.Why)
		return nil, nil, false
	}
	if len(asked) == 0 {
		return visible, nil, true
	}
	var whys []string
	for _, t := range asked {
		if slices.Contains(visible, t) {
			shown = append(shown, t)
			continue
		}
		d := b.policy.May(ctx, policy.View, user, channel, t)
		withheld = append(withheld, d.Why)
		if !slices.Contains(whys, d.Why) {
			whys = append(whys, d.Why)
		}
	}
	if len(shown) == 0 {
		b.refuse(ctx, responseURL, user, channel, what, asked, strings.Join(whys, " "))
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
