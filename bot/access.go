package bot

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/metrics"
)

// groupCacheTTL is how long user-group members are trusted before asking
// Slack again: short, so a removed approver loses the right quickly.
const groupCacheTTL = time.Minute

// groupStaleMax bounds how long the last known members are trusted while
// Slack cannot be asked: long enough to ride out a short Slack incident,
// short enough that a removed approver does not keep the right.
const groupStaleMax = 10 * time.Minute

// access resolves user groups (S…) named in the policy to their members,
// with usergroups.users.list, cached briefly and trusted stale only for a
// bounded time. What is allowed is decided by bot/policy.
type access struct {
	api     SlackAPI
	metrics *metrics.Metrics
	log     *slog.Logger

	clock func() time.Time // nil: time.Now (tests move it)

	mu    sync.Mutex
	cache map[string]cachedGroup
}

type cachedGroup struct {
	members []string
	at      time.Time
}

func (a *access) now() time.Time {
	if a.clock != nil {
		return a.clock()
	}
	return time.Now()
}

func (a *access) groupMembers(ctx context.Context, group string) ([]string, error) {
	a.mu.Lock()
	c, ok := a.cache[group]
	a.mu.Unlock()
	if ok && a.now().Sub(c.at) < groupCacheTTL {
		return c.members, nil
	}
	var members []string
	err := call(ctx, a.metrics, "usergroups.users.list", func(ctx context.Context) error {
		var err error
		members, err = a.api.GetUserGroupMembersContext(ctx, group)
		return err
	})
	if err != nil {
		age := a.now().Sub(c.at)
		if ok && age < groupStaleMax { // Slack is unwell: recent members are better than nothing
			a.log.Warn("using cached user-group members", slog.String("group", group), slog.Duration("age", age), slog.String("error", err.Error()))
			return c.members, nil
		}
		if ok {
			return nil, fmt.Errorf("members of user group %s: Slack does not answer (%w) and the last known members are %s old, over the %s pgkill trusts; try again when Slack answers", group, err, blocks.Duration(age), blocks.Duration(groupStaleMax))
		}
		return nil, fmt.Errorf("members of user group %s: %w", group, err)
	}
	a.mu.Lock()
	a.cache[group] = cachedGroup{members: members, at: a.now()}
	a.mu.Unlock()
	return members, nil
}
