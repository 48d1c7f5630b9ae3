package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
)

// memSlack is an in-memory channel: messages by ts, and failures to inject.
type memSlack struct {
	mu    sync.Mutex
	msgs  map[string][]string // ts -> every text it had
	fail  []error             // answers of the next calls
	hold  chan struct{}       // when set, calls wait on it
	calls int
	log   []string // the text of every call that succeeded, in order
}

func newMemSlack() *memSlack {
	return &memSlack{msgs: map[string][]string{}}
}

func (m *memSlack) call(ctx context.Context) error {
	m.mu.Lock()
	hold := m.hold
	m.calls++
	m.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.fail) > 0 {
		err := m.fail[0]
		m.fail = m.fail[1:]
		return err
	}
	return nil
}

func (m *memSlack) Post(ctx context.Context, _, _ string, msg blocks.Message) (string, error) {
	if err := m.call(ctx); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := fmt.Sprintf("%d.000", len(m.msgs)+1)
	m.msgs[ts] = []string{msg.Text}
	m.log = append(m.log, msg.Text)
	return ts, nil
}

func (m *memSlack) Update(ctx context.Context, _, ts string, msg blocks.Message) error {
	if err := m.call(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.msgs[ts]; !ok {
		return slack.SlackErrorResponse{Err: "message_not_found"}
	}
	m.msgs[ts] = append(m.msgs[ts], msg.Text)
	m.log = append(m.log, msg.Text)
	return nil
}

func (m *memSlack) Respond(ctx context.Context, _ string, _ bool, msg blocks.Message) error {
	_, err := m.Post(ctx, "", "", msg)
	return err
}

func (m *memSlack) snapshot() (map[string][]string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]string{}
	for k, v := range m.msgs {
		out[k] = append([]string(nil), v...)
	}
	return out, m.calls
}

func start(t *testing.T, s outbox.Slack) *outbox.Outbox {
	o := outbox.New(s, outbox.Options{Pace: time.Millisecond, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Attempts: 4,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return o
}

func flush(t *testing.T, o *outbox.Outbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (%d pending)", err, o.Pending())
	}
}

type result struct {
	ts  string
	err error
}

func callback() (func(string, error), chan result) {
	ch := make(chan result, 10)
	return func(ts string, err error) { ch <- result{ts, err} }, ch
}

func msg(text string) blocks.Message { return blocks.Message{Text: text} }

func TestRetriedUntilSlackHasIt(t *testing.T) {
	s := newMemSlack()
	s.fail = []error{slack.StatusCodeError{Code: 500, Status: "500 Internal Server Error"}, errors.New("connection reset")}
	o := start(t, s)
	sent, got := callback()
	o.Put(outbox.Item{Key: "a", Msg: msg("alert"), Sent: sent})
	r := <-got
	if r.err != nil || r.ts == "" {
		t.Fatalf("sent %+v", r)
	}
	if msgs, calls := s.snapshot(); calls != 3 || len(msgs) != 1 {
		t.Errorf("%d calls, %d messages; want 3 calls (two failed) and one message", calls, len(msgs))
	}
}

func TestLatestWinsBeforePost(t *testing.T) {
	s := newMemSlack()
	s.hold = make(chan struct{})
	o := start(t, s)
	o.Put(outbox.Item{Key: "first", Msg: msg("first")}) // holds the sender
	sent, got := callback()
	o.Put(outbox.Item{Key: "a", Msg: msg("v1"), Sent: sent})
	o.Put(outbox.Item{Key: "a", Msg: msg("v2")})
	o.Put(outbox.Item{Key: "a", Msg: msg("resolved")})
	close(s.hold)
	r := <-got
	flush(t, o)
	msgs, _ := s.snapshot()
	if v := msgs[r.ts]; len(v) != 1 || v[0] != "resolved" {
		t.Errorf("message %s had %q, want only the latest version posted", r.ts, v)
	}
	if len(msgs) != 2 {
		t.Errorf("%d messages, want 2", len(msgs))
	}
}

func TestEditWhilePostInFlightUpdates(t *testing.T) {
	s := newMemSlack()
	s.hold = make(chan struct{})
	o := start(t, s)
	sent, got := callback()
	o.Put(outbox.Item{Key: "a", Msg: msg("v1"), Sent: sent})
	for {
		if _, calls := s.snapshot(); calls == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	o.Put(outbox.Item{Key: "a", Msg: msg("v2")}) // the caller does not know the ts yet
	close(s.hold)
	r := <-got
	flush(t, o)
	msgs, _ := s.snapshot()
	if v := msgs[r.ts]; len(msgs) != 1 || len(v) != 2 || v[1] != "v2" {
		t.Errorf("messages %v, want one posted as v1 and edited to v2", msgs)
	}
}

func TestUpdateWithKnownTS(t *testing.T) {
	s := newMemSlack()
	o := start(t, s)
	sent, got := callback()
	o.Put(outbox.Item{Key: "a", Msg: msg("v1"), Sent: sent})
	r := <-got
	flush(t, o)
	o.Put(outbox.Item{Key: "a", TS: r.ts, Msg: msg("v2")})
	flush(t, o)
	if msgs, _ := s.snapshot(); len(msgs) != 1 || len(msgs[r.ts]) != 2 {
		t.Errorf("messages %v, want one edited", msgs)
	}
}

func TestGivesUp(t *testing.T) {
	for name, fail := range map[string][]error{
		"permanent":      {slack.SlackErrorResponse{Err: "msg_blocks_too_long"}},
		"too many tries": {errors.New("x"), errors.New("x"), errors.New("x"), errors.New("x"), errors.New("x")},
	} {
		t.Run(name, func(t *testing.T) {
			s := newMemSlack()
			s.fail = fail
			o := start(t, s)
			sent, got := callback()
			o.Put(outbox.Item{Key: "a", Msg: msg("v1"), Sent: sent})
			if r := <-got; r.err == nil {
				t.Fatalf("sent %+v, want the error", r)
			}
			if _, calls := s.snapshot(); calls != min(len(fail), 4) {
				t.Errorf("%d calls", calls)
			}
		})
	}
}

// Put never waits on Slack, however slow it is.
func TestPutDoesNotWait(t *testing.T) {
	s := newMemSlack()
	s.hold = make(chan struct{})
	defer close(s.hold)
	o := start(t, s)
	for i := range 1000 {
		o.Put(outbox.Item{Key: fmt.Sprint(i % 100), Msg: msg("x")})
	}
	if n := o.Pending(); n != 100 {
		t.Errorf("%d pending, want 100 (one per key)", n)
	}
}

// Stopping gives up on what is pending and tells the callers.
func TestRunEndsGivesUp(t *testing.T) {
	s := newMemSlack()
	s.hold = make(chan struct{})
	o := outbox.New(s, outbox.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	sent, got := callback()
	o.Put(outbox.Item{Key: "a", Msg: msg("v1"), Sent: sent})
	o.Put(outbox.Item{Key: "b", Msg: msg("v1"), Sent: sent})
	cancel()
	<-done
	for range 2 {
		if r := <-got; r.err == nil {
			t.Errorf("sent %+v after cancel", r)
		}
	}
}

// New messages go out before edits of known ones, however many edits wait.
func TestPostsBeforeEdits(t *testing.T) {
	s := newMemSlack()
	o := start(t, s)
	var tss []string
	for i := range 5 {
		sent, got := callback()
		o.Put(outbox.Item{Key: fmt.Sprint(i), Msg: msg("v1"), Sent: sent})
		tss = append(tss, (<-got).ts)
	}
	flush(t, o)
	s.mu.Lock()
	s.hold = make(chan struct{})
	s.mu.Unlock()
	o.Put(outbox.Item{Key: "first", Msg: msg("holds the sender")})
	for i, ts := range tss {
		o.Put(outbox.Item{Key: fmt.Sprint(i), TS: ts, Msg: msg("v2")})
	}
	o.Put(outbox.Item{Key: "new", Msg: msg("news")})
	close(s.hold)
	flush(t, o)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, text := range s.log {
		if text == "news" && i != 6 {
			t.Errorf("calls in this order: %q; want the news right after the message holding the sender", s.log)
		}
	}
}

// Messages to one channel are posted in the order they were put: a notice
// whose post failed once is retried before the one put after it ("prod is
// up again" never lands before "prod is DOWN").
func TestOrderKeptPerChannel(t *testing.T) {
	s := &orderSlack{failFirst: 1}
	o := outbox.New(s, outbox.Options{Pace: time.Millisecond, Backoff: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go o.Run(ctx)
	o.Put(outbox.Item{Key: "down", Msg: blocks.Notice("prod is DOWN")})
	o.Put(outbox.Item{Key: "up", Msg: blocks.Notice("prod is up again")})
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if err := o.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if got := s.posted(); len(got) != 2 || got[0] != "prod is DOWN" || got[1] != "prod is up again" {
		t.Errorf("posted in this order: %q", got)
	}
}

// orderSlack fails its first failFirst posts with HTTP 500, then records
// what it posts.
type orderSlack struct {
	mu        sync.Mutex
	failFirst int
	texts     []string
}

func (s *orderSlack) Post(_ context.Context, _, _ string, m blocks.Message) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failFirst > 0 {
		s.failFirst--
		return "", slack.StatusCodeError{Code: 500, Status: "500 Internal Server Error"}
	}
	s.texts = append(s.texts, m.Text)
	return fmt.Sprintf("1.%06d", len(s.texts)), nil
}

func (s *orderSlack) Update(context.Context, string, string, blocks.Message) error { return nil }

func (s *orderSlack) Respond(context.Context, string, bool, blocks.Message) error { return nil }

func (s *orderSlack) posted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.texts...)
}

// A key put again on another channel while its call is in flight frees the
// lane the call went out on (it used to look up the new channel's lane,
// which need not exist: a nil dereference outside any recover).
func TestLaneChangeWhileInFlight(t *testing.T) {
	s := newMemSlack()
	s.hold = make(chan struct{})
	o := start(t, s)
	o.Put(outbox.Item{Key: "a", Channel: "C1", Msg: msg("v1")})
	for {
		if _, calls := s.snapshot(); calls == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	o.Put(outbox.Item{Key: "a", Channel: "C2", Msg: msg("v2")})
	close(s.hold)
	flush(t, o)
	o.Put(outbox.Item{Key: "b", Channel: "C1", Msg: msg("on the first lane again")})
	flush(t, o)
	if _, calls := s.snapshot(); calls != 3 {
		t.Errorf("%d calls, want 3 (post, edit, post)", calls)
	}
}
