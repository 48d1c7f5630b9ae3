package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/pgkill/pgkill/blocks"
)

// Act is what a user asks to do.
type Act string

const (
	View    Act = "view"    // list, refresh, doctor
	Request Act = "request" // press Cancel or Terminate
	Approve Act = "approve" // approve or deny
	// Stop stops an autopilot rule's countdown: anyone who may see the
	// target, on the card (in the alert channel too).
	Stop Act = "stop"
)

// Members returns the members of a Slack user group (S…); the caller
// caches and bounds staleness.
type Members func(ctx context.Context, group string) ([]string, error)

// Checker answers May questions from a Policy. Safe for concurrent use.
type Checker struct {
	policy  atomic.Pointer[Policy]
	members Members
	// clicks are also allowed in these channels (the alert channel: its
	// alerts carry buttons, and their approvals thread under them).
	clickChannels []string
}

// NewChecker makes a checker; clickChannels are channels where buttons
// act whatever the rules say (PGKILL_ALERT_CHANNEL).
func NewChecker(p *Policy, members Members, clickChannels ...string) *Checker {
	c := &Checker{members: members, clickChannels: clickChannels}
	c.policy.Store(p)
	return c
}

// Policy returns the policy checked.
func (c *Checker) Policy() *Policy { return c.policy.Load() }

// Reload checks against p from now on (SIGHUP: the policy file read again).
func (c *Checker) Reload(p *Policy) { c.policy.Store(p) }

// Decision is a yes, or a no that says why and what would allow it (a
// sentence in mrkdwn, for the user).
type Decision struct {
	Allowed bool
	Why     string
}

var yes = Decision{Allowed: true}

func no(format string, args ...any) Decision {
	return Decision{Why: fmt.Sprintf(format, args...)}
}

// May decides whether user may do act on target from channel. Three things
// can happen: allowed; refused with the reason (wrong channel, not in the
// list); refused because a user group could not be read — the reason then
// says so, and nothing is allowed on a guess.
func (c *Checker) May(ctx context.Context, act Act, user, channel, target string) Decision {
	r := c.Policy().For(target)
	clickHere := act != View && slices.Contains(c.clickChannels, channel)
	if !r.InChannel(channel) && !clickHere {
		return no("pgkill does not act on *%s* here: use it in %s.", blocks.Escape(target), channelList(r.Channels))
	}
	lists := []struct {
		who  []string
		verb string
	}{{r.Viewers, "see"}}
	switch act {
	case Request:
		lists = append(lists, struct {
			who  []string
			verb string
		}{r.Requesters, "ask to cancel or terminate queries on"})
	case Approve:
		lists = []struct {
			who  []string
			verb string
		}{{r.Approvers, "approve or deny requests on"}}
	}
	for _, l := range lists {
		if len(l.who) == 0 {
			continue // anyone
		}
		ok, err := c.member(ctx, user, l.who)
		if ok {
			continue
		}
		d := no("only %s may %s *%s*.", blocks.Mentions(l.who), l.verb, blocks.Escape(target))
		if err != nil {
			d.Why += " (pgkill could not check user-group membership: " + blocks.Escape(err.Error()) + ")"
		}
		return d
	}
	return yes
}

// Visible returns the targets user may view from channel, in order. When
// there are none, the refusal says why without naming any target: where
// pgkill answers, or who may use it there.
func (c *Checker) Visible(ctx context.Context, user, channel string, targets []string) ([]string, Decision) {
	var shown, here, viewers []string
	var groupErr error
	for _, t := range targets {
		r := c.Policy().For(t)
		if !r.InChannel(channel) {
			continue
		}
		here = append(here, t)
		if len(r.Viewers) == 0 {
			shown = append(shown, t)
			continue
		}
		ok, err := c.member(ctx, user, r.Viewers)
		if ok {
			shown = append(shown, t)
			continue
		}
		if err != nil && groupErr == nil {
			groupErr = err
		}
		for _, v := range r.Viewers {
			if !slices.Contains(viewers, v) {
				viewers = append(viewers, v)
			}
		}
	}
	switch {
	case len(shown) > 0:
		return shown, yes
	case len(here) == 0:
		return nil, no("pgkill does not answer here: use it in %s.", channelList(c.Policy().Channels(targets)))
	}
	d := no("only %s may use pgkill here.", blocks.Mentions(viewers))
	if groupErr != nil {
		d.Why += " (pgkill could not check user-group membership: " + blocks.Escape(groupErr.Error()) + ")"
	}
	return nil, d
}

// member reports whether user is in list, directly or through a group.
func (c *Checker) member(ctx context.Context, user string, list []string) (bool, error) {
	var firstErr error
	for _, id := range list {
		if id == user {
			return true, nil
		}
		if !strings.HasPrefix(id, "S") || c.members == nil {
			continue
		}
		members, err := c.members(ctx, id)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if slices.Contains(members, user) {
			return true, nil
		}
	}
	return false, firstErr
}

func channelList(ids []string) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = "<#" + id + ">"
	}
	return strings.Join(parts, ", ")
}
