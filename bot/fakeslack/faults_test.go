package fakeslack_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/bot/fakeslack"
)

func client(s *fakeslack.Server) *slack.Client {
	return slack.New(fakeslack.BotToken, slack.OptionAPIURL(s.APIURL()))
}

func section(text string) slack.MsgOption {
	return slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil))
}

func TestFail(t *testing.T) {
	s := fakeslack.New(t)
	s.Fail("chat.postMessage", 2)
	api := client(s)
	for i := range 3 {
		_, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false))
		var sc slack.StatusCodeError
		if failed := errors.As(err, &sc) && sc.Code == 500; failed != (i < 2) {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if n := len(s.Messages(nil)); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestStall(t *testing.T) {
	s := fakeslack.New(t)
	release := s.Stall("chat.postMessage")
	api := client(s)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("hi", false)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled call: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false))
		done <- err
	}()
	s.Eventually(t, 10*time.Second, "the second call stalled", func() bool { return s.Stalled("chat.postMessage") == 2 })
	release()
	if err := <-done; err != nil {
		t.Errorf("released call: %v", err)
	}
	if n := len(s.Messages(nil)); n != 1 {
		t.Errorf("%d messages, want the released one only", n)
	}
}

func TestMessageTooLong(t *testing.T) {
	s := fakeslack.New(t)
	api := client(s)
	var opts []slack.MsgOption
	var bs []slack.Block
	for range 5 {
		bs = append(bs, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, strings.Repeat("x", 2500), false, false), nil, nil))
	}
	opts = append(opts, slack.MsgOptionBlocks(bs...))
	_, _, err := api.PostMessageContext(t.Context(), "C1", opts...)
	var se slack.SlackErrorResponse
	if !errors.As(err, &se) || se.Err != "msg_blocks_too_long" {
		t.Errorf("12,500 characters of text: %v", err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "C1", section(strings.Repeat("x", 2500))); err != nil {
		t.Errorf("2,500 characters: %v", err)
	}
	if v := s.Violations(); len(v) != 1 || !strings.Contains(v[0], "msg_blocks_too_long") {
		t.Errorf("violations %q", v)
	}
}
