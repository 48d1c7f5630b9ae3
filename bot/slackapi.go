package bot

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
)

// SlackAPI is what the bot needs of *slack.Client.
type SlackAPI interface {
	PostMessageContext(ctx context.Context, channelID string, options ...slack.MsgOption) (string, string, error)
	UpdateMessageContext(ctx context.Context, channelID, timestamp string, options ...slack.MsgOption) (string, string, string, error)
	// SendMessageContext with slack.MsgOptionResponseURL posts to a response_url.
	SendMessageContext(ctx context.Context, channelID string, options ...slack.MsgOption) (string, string, string, error)
	GetUserGroupMembersContext(ctx context.Context, userGroup string, options ...slack.GetUserGroupMembersOption) ([]string, error)
	// OpenViewContext opens a modal for the user whose click gave triggerID.
	OpenViewContext(ctx context.Context, triggerID string, view slack.ModalViewRequest) (*slack.ViewResponse, error)
	// AuthTestContext says which workspace (and Enterprise Grid org) the bot token belongs to.
	AuthTestContext(ctx context.Context) (*slack.AuthTestResponse, error)
}

// maxRateLimitRetries bounds how often one call waits out a 429.
const maxRateLimitRetries = 5

// slackCallTimeout bounds each attempt of a Web API call: a hung Slack
// must not hold an approval, a listing or the alert outbox for long.
const slackCallTimeout = 10 * time.Second

// slackCall runs one Web API call, each attempt within slackCallTimeout. A
// 429 is retried after the Retry-After Slack gave; other errors are logged
// with the method and returned.
func (b *Bot) slackCall(ctx context.Context, method string, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, slackCallTimeout)
		err := call(cctx)
		cancel()
		if err == nil {
			return nil
		}
		var rl *slack.RateLimitedError
		if errors.As(err, &rl) && attempt < maxRateLimitRetries {
			b.log.Warn("slack rate limited", slog.String("method", method), slog.Duration("retry_after", rl.RetryAfter), slog.Int("attempt", attempt+1))
			b.metrics.slackRetryOn(method)
			if err := sleep(ctx, max(rl.RetryAfter, 100*time.Millisecond)); err != nil {
				return err
			}
			continue
		}
		b.log.Error("slack api error", slog.String("method", method), slog.String("error", err.Error()))
		b.metrics.slackErrorOn(method)
		return err
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func msgOptions(m blocks.Message) []slack.MsgOption {
	return []slack.MsgOption{slack.MsgOptionText(m.Text, false), slack.MsgOptionBlocks(m.Blocks...)}
}

// post posts m in channel (in a thread when threadTS is set) and returns its ts.
func (b *Bot) post(ctx context.Context, channel, threadTS string, m blocks.Message) (string, error) {
	opts := msgOptions(m)
	if threadTS != "" {
		opts = append(opts, slack.MsgOptionTS(threadTS))
	}
	var ts string
	err := b.slackCall(ctx, "chat.postMessage", func(ctx context.Context) error {
		var err error
		_, ts, err = b.slack.PostMessageContext(ctx, channel, opts...)
		return err
	})
	return ts, err
}

// update replaces the message at channel/ts with m.
func (b *Bot) update(ctx context.Context, channel, ts string, m blocks.Message) error {
	return b.slackCall(ctx, "chat.update", func(ctx context.Context) error {
		_, _, _, err := b.slack.UpdateMessageContext(ctx, channel, ts, msgOptions(m)...)
		return err
	})
}

// respond answers through an interaction's response_url: ephemeral (only
// the user sees it) or in the channel.
func (b *Bot) respond(ctx context.Context, responseURL string, inChannel bool, m blocks.Message) error {
	kind := slack.ResponseTypeEphemeral
	if inChannel {
		kind = slack.ResponseTypeInChannel
	}
	opts := append(msgOptions(m), slack.MsgOptionResponseURL(responseURL, kind))
	return b.slackCall(ctx, "response_url", func(ctx context.Context) error {
		_, _, _, err := b.slack.SendMessageContext(ctx, "", opts...)
		return err
	})
}

// tell answers one user privately; failures are logged by slackCall.
func (b *Bot) tell(ctx context.Context, responseURL, text string) {
	_ = b.respond(ctx, responseURL, false, blocks.Notice(text))
}
