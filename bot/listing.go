package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/approval"
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// Command answers a /pgkill command after its ack. Every answer comes
// after the policy check and names only the targets this person may see
// here: a usage error, help, targets, a listing, a doctor report or a bulk
// request.
func (b *Bot) Command(ctx context.Context, cmd slack.SlashCommand) {
	q, err := ParseCommand(cmd.Text, b.db.Names(), b.cfg.MinDuration)
	kind := commandKind(q, err)
	b.metrics.Command(kind)
	b.log.Info("command", slog.String("user", cmd.UserID), slog.String("channel", cmd.ChannelID), slog.String("kind", kind))
	ctx, cancel := context.WithTimeout(ctx, b.cfg.QueryTimeout())
	defer cancel()
	var asked []string
	if err == nil {
		asked = q.Targets
	}
	shown, withheld, ok := b.viewable(ctx, cmd.ResponseURL, cmd.UserID, cmd.ChannelID, kind, asked)
	if !ok {
		return
	}
	if m := b.answer(q, err, shown); m != nil {
		b.respond(cmd.ResponseURL, false, *m)
		return
	}
	q.Targets = shown
	switch q.Kind {
	case KindAutopilot:
		b.autopilot(ctx, cmd, q, shown)
	case KindBulk:
		b.bulkCommand(ctx, cmd, q)
	case KindDoctor: // private to the caller, always
		b.respond(cmd.ResponseURL, false, blocks.Doctor(b.db.Doctor(ctx, q.Targets), b.db.Specs()))
	default:
		m, results := b.listing(ctx, q, withheld)
		key := "listing|" + cmd.TriggerID + "|" + cmd.ResponseURL
		posted := b.post(cmd, key, m)
		b.complete(q, withheld, results, func(m blocks.Message) {
			if <-posted { // a listing that went through the response_url cannot be edited
				b.out.Put(outbox.Item{Key: key, Channel: cmd.ChannelID, Msg: m})
			}
		})
	}
}

// autopilot shows the rules and what stops them, or pauses or resumes
// them (approvers).
func (b *Bot) autopilot(ctx context.Context, cmd slack.SlashCommand, q Query, shown []string) {
	c := approval.Click{User: cmd.UserID, Channel: cmd.ChannelID, ResponseURL: cmd.ResponseURL}
	target := ""
	if len(q.Targets) == 1 && q.Verb != "" && q.Rule == "" || q.Rule != "" {
		target = q.Targets[0]
	}
	switch q.Verb {
	case "pause":
		b.flow.Autopilot().Pause(ctx, c, target, b.db.Names(), b.cfg.AlertChannel)
	case "resume":
		b.flow.Autopilot().Resume(ctx, c, q.Rule, target, b.db.Names(), b.cfg.AlertChannel)
	default:
		pauses, err := b.flow.Autopilot().Pauses(ctx)
		if err != nil {
			b.tell(cmd.ResponseURL, ":x: pgkill could not read the autopilot's pauses (state store: "+blocks.Escape(err.Error())+").")
			return
		}
		b.respond(cmd.ResponseURL, false, blocks.AutopilotStatus(b.policy.Policy().Autopilot, pauses, b.cfg.Command))
	}
}

// completeFor bounds how long a degraded listing waits for the lock table
// to answer: a pile-up's storm can last minutes.
const completeFor = 15 * time.Minute

// complete edits a listing in place with the blocking tree once the lock
// table answers, when some target's part of it was Degraded (a pile-up's
// deadlock checks held the lock table): it asks again until the answer is
// complete, or completeFor has passed.
func (b *Bot) complete(q Query, withheld []string, results []pg.Listing, edit func(blocks.Message)) {
	if !slices.ContainsFunc(results, func(l pg.Listing) bool { return l.Degraded }) {
		return
	}
	b.goWork(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, completeFor)
		defer cancel()
		for i := range results {
			for results[i].Degraded && results[i].Err == nil && ctx.Err() == nil {
				results[i] = b.db.Complete(ctx, results[i])
			}
			if results[i].Err != nil {
				b.log.Warn("the blocking tree of a degraded listing never came", slog.String("target", results[i].Target), slog.String("error", results[i].Err.Error()))
				return
			}
		}
		edit(b.render(ctx, q, withheld, results))
	})
}

// post shows a listing in the channel under key: incident responders
// share it, and its ts lets Refresh update it and approvals thread under
// it. Where the bot may not post (not a member, a DM), the response_url
// still can. The channel it returns says whether the post went out in the
// channel (an edit of key then edits it).
func (b *Bot) post(cmd slack.SlashCommand, key string, m blocks.Message) <-chan bool {
	posted := make(chan bool, 1)
	b.out.Put(outbox.Item{Key: key, Channel: cmd.ChannelID, Msg: m, Within: listingWithin, Sent: func(_ string, err error) {
		posted <- err == nil
		if err == nil {
			return
		}
		b.out.Put(outbox.Item{Key: "listing-url|" + cmd.ResponseURL, URL: cmd.ResponseURL, InChannel: true, Msg: m, Sent: func(_ string, err error) {
			if err != nil {
				b.tell(cmd.ResponseURL, ":x: pgkill could not post the listing: "+blocks.Escape(err.Error()))
			}
		}})
	}})
	return posted
}

// listingWithin is how long a listing's post may keep failing before it
// goes through the command's response_url instead: at 3 a.m. an answer now
// beats a shared one later.
const listingWithin = 5 * time.Second

// respond answers privately (or in the channel) through a response_url.
func (b *Bot) respond(url string, inChannel bool, m blocks.Message) {
	b.out.Put(outbox.Item{Key: fmt.Sprintf("respond|%s|%d", url, time.Now().UnixNano()), URL: url, InChannel: inChannel, Msg: m})
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

// refresh re-runs the listing a Refresh button belongs to, in place.
func (b *Bot) refresh(ctx context.Context, cb slack.InteractionCallback, args string) {
	q, err := ParseCommand(args, b.db.Names(), b.cfg.MinDuration)
	if err != nil || q.Kind != KindList {
		b.tell(cb.ResponseURL, ":warning: this listing can no longer be refreshed ("+blocks.Escape(errText(err))+"); run the command again.")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.QueryTimeout())
	defer cancel()
	shown, withheld, ok := b.viewable(ctx, cb.ResponseURL, cb.User.ID, cb.Channel.ID, "refresh", q.Targets)
	if !ok {
		return
	}
	q.Targets = shown
	m, results := b.listing(ctx, q, withheld)
	url := cb.ResponseURL
	it := outbox.Item{Key: "listing|" + cb.Channel.ID + "|" + cb.Container.MessageTs, Channel: cb.Channel.ID, TS: cb.Container.MessageTs}
	edit := func(m blocks.Message, sent func(string, error)) {
		it.Msg, it.Sent = m, sent
		b.out.Put(it)
	}
	edit(m, func(_ string, err error) {
		if err != nil {
			b.tell(url, ":x: pgkill could not refresh the listing: "+blocks.Escape(err.Error()))
		}
	})
	b.complete(q, withheld, results, func(m blocks.Message) { edit(m, nil) })
}

// viewable splits the targets a command asks for into those user may see
// from channel and those withheld, each with why; asked empty means every
// target user may see here, and then nothing is said of the others. When
// none may be seen it answers the user privately with the reasons (naming
// only targets the user asked for), records the refusal and returns false.
func (b *Bot) viewable(ctx context.Context, responseURL, user, channel, what string, asked []string) (shown, withheld []string, ok bool) {
	visible, d := b.policy.Visible(ctx, user, channel, b.db.Names())
	if len(visible) == 0 {
		b.refuse(responseURL, user, channel, what, asked, d.Why)
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
		b.refuse(responseURL, user, channel, what, asked, strings.Join(whys, " "))
		return nil, nil, false
	}
	return shown, withheld, true
}

// listing lists q's targets (q.Targets: those the user may see); withheld
// says which the user asked for and may not see here. It returns the
// message and what it was made of (to complete a degraded one).
func (b *Bot) listing(ctx context.Context, q Query, withheld []string) (blocks.Message, []pg.Listing) {
	results := b.list(ctx, q)
	return b.render(ctx, q, withheld, results), results
}

// render renders a listing; Cancel all / Terminate all act on exactly what
// it matched.
func (b *Bot) render(ctx context.Context, q Query, withheld []string, results []pg.Listing) blocks.Message {
	now := time.Now()
	l := blocks.Listing{
		Targets: q.Targets, Threshold: q.Threshold, Filters: q.Filters, Args: q.Args, Limit: q.Limit,
		Results: results, Now: now, Withheld: withheld, Roles: roles(b.db),
	}
	if set := request.Freeze(results, strings.TrimSpace(q.Args), now); len(set.Members) >= 2 {
		l.BulkSet, l.BulkCount = b.flow.KeepSet(ctx, set)
	}
	return blocks.ListingMessage(l)
}

// list lists q's targets, recording each one's health.
func (b *Bot) list(ctx context.Context, q Query) []pg.Listing {
	start := time.Now()
	results := b.db.List(ctx, q.Targets, q.Filter)
	took := time.Since(start)
	for _, r := range results {
		b.metrics.Listed(r.Target, took, r.Err == nil)
		b.health.checked(r.Target, r.Err, time.Now())
		if r.Err != nil {
			b.log.Warn("target could not be listed", slog.String("target", r.Target), slog.String("error", r.Err.Error()))
		}
	}
	return results
}

// bulkCommand handles `/pgkill cancel|terminate …`: it lists what matches
// now, freezes that set and asks for approval of it. q.Targets are the
// targets the user may see (Command checked them).
func (b *Bot) bulkCommand(ctx context.Context, cmd slack.SlashCommand, q Query) {
	scope := strings.TrimSpace(fmt.Sprintf("%s ≥ %s %s", strings.Join(q.Targets, " "), blocks.Duration(q.Threshold), q.Filters))
	kinds := policy.KindsOf(string(q.Action), true)
	if why := b.flow.ReasonRefusal(q.Action, kinds, q.Reason, scope); why != "" {
		b.tell(cmd.ResponseURL, why)
		return
	}
	var failed []string
	ls := b.list(ctx, q)
	for _, l := range ls {
		if l.Err != nil {
			failed = append(failed, l.Target+": "+l.Err.Error())
		}
	}
	if len(failed) > 0 {
		b.tell(cmd.ResponseURL, ":x: nothing was requested: "+blocks.Escape(strings.Join(failed, "; "))+". A bulk request needs every target it names to answer; name the targets that do.")
		return
	}
	c := approval.Click{User: cmd.UserID, Channel: cmd.ChannelID, ResponseURL: cmd.ResponseURL}
	if a, ok := b.flow.AskSet(ctx, c, q.Action, request.Freeze(ls, scope, time.Now())); ok {
		b.flow.Make(ctx, c, a, q.Reason)
	}
}

// commandKind classifies a command for the metric without its arguments.
func commandKind(q Query, err error) string {
	if err != nil {
		return "invalid"
	}
	return strings.ToLower(q.Kind)
}

func errText(err error) string {
	if err == nil {
		return "not a listing"
	}
	return err.Error()
}

// roles maps each target to its replication role, as the fleet has it now
// (a failover changes it); targets without one are absent.
func roles(db fleet.DB) map[string]string {
	m := map[string]string{}
	for _, s := range db.Specs() {
		if s.Role != "" {
			m[s.Name] = s.Role
		}
	}
	return m
}
