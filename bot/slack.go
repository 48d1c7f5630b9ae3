package bot

import (
	"context"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/metrics"
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

// slackCallTimeout bounds each Web API call: a hung Slack must not hold the
// outbox, a form or a policy check for long.
const slackCallTimeout = 10 * time.Second

// call runs one Web API call within slackCallTimeout, counting a failure.
// It never retries: writes are retried by the outbox, and the rest (a
// form's trigger, a user group) are asked again by their callers.
func call(ctx context.Context, m *metrics.Metrics, method string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, slackCallTimeout)
	defer cancel()
	err := fn(ctx)
	if err != nil {
		m.SlackError(method)
	}
	return err
}

// slackWriter is Slack as the outbox writes to it.
type slackWriter struct {
	api     SlackAPI
	metrics *metrics.Metrics
}

func msgOptions(m blocks.Message) []slack.MsgOption {
	return []slack.MsgOption{slack.MsgOptionText(m.Text, false), slack.MsgOptionBlocks(m.Blocks...)}
}

func (s slackWriter) Post(ctx context.Context, channel, thread string, m blocks.Message) (string, error) {
	opts := msgOptions(m)
	if thread != "" {
		opts = append(opts, slack.MsgOptionTS(thread))
	}
	var ts string
	err := call(ctx, s.metrics, "chat.postMessage", func(ctx context.Context) error {
		var err error
		_, ts, err = s.api.PostMessageContext(ctx, channel, opts...)
		return err
	})
	return ts, err
}

func (s slackWriter) Update(ctx context.Context, channel, ts string, m blocks.Message) error {
	return call(ctx, s.metrics, "chat.update", func(ctx context.Context) error {
		_, _, _, err := s.api.UpdateMessageContext(ctx, channel, ts, msgOptions(m)...)
		return err
	})
}

func (s slackWriter) Respond(ctx context.Context, url string, inChannel bool, m blocks.Message) error {
	kind := slack.ResponseTypeEphemeral
	if inChannel {
		kind = slack.ResponseTypeInChannel
	}
	opts := append(msgOptions(m), slack.MsgOptionResponseURL(url, kind))
	return call(ctx, s.metrics, "response_url", func(ctx context.Context) error {
		_, _, _, err := s.api.SendMessageContext(ctx, "", opts...)
		return err
	})
}
