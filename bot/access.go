package bot

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// groupCacheTTL is how long user-group members are trusted before asking
// Slack again: short, so a removed approver loses the right quickly.
const groupCacheTTL = time.Minute

// access decides who may request and who may approve. Lists hold user IDs
// (U…, W…) and user-group IDs (S…), whose members are resolved with
// usergroups.users.list.
type access struct {
	bot        *Bot
	approvers  []string
	requesters []string // empty: anyone

	mu    sync.Mutex
	cache map[string]cachedGroup
}

type cachedGroup struct {
	members []string
	at      time.Time
}

func (a *access) mayRequest(ctx context.Context, user string) (bool, error) {
	if len(a.requesters) == 0 {
		return true, nil
	}
	return a.member(ctx, user, a.requesters)
}

func (a *access) mayApprove(ctx context.Context, user string) (bool, error) {
	return a.member(ctx, user, a.approvers)
}

func (a *access) member(ctx context.Context, user string, list []string) (bool, error) {
	var firstErr error
	for _, id := range list {
		id = strings.TrimSpace(id)
		if id == user {
			return true, nil
		}
		if !strings.HasPrefix(id, "S") {
			continue
		}
		members, err := a.groupMembers(ctx, id)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, m := range members {
			if m == user {
				return true, nil
			}
		}
	}
	return false, firstErr
}

func (a *access) groupMembers(ctx context.Context, group string) ([]string, error) {
	a.mu.Lock()
	c, ok := a.cache[group]
	a.mu.Unlock()
	if ok && a.bot.now().Sub(c.at) < groupCacheTTL {
		return c.members, nil
	}
	var members []string
	err := a.bot.slackCall(ctx, "usergroups.users.list", func(ctx context.Context) error {
		var err error
		members, err = a.bot.slack.GetUserGroupMembersContext(ctx, group)
		return err
	})
	if err != nil {
		if ok { // Slack is unwell: the last known members are better than nothing
			a.bot.log.Warn("using cached user-group members", slog.String("group", group), slog.String("error", err.Error()))
			return c.members, nil
		}
		return nil, fmt.Errorf("members of user group %s: %w", group, err)
	}
	a.mu.Lock()
	a.cache[group] = cachedGroup{members: members, at: a.bot.now()}
	a.mu.Unlock()
	return members, nil
}
