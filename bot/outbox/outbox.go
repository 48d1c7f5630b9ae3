// Package outbox provides a paced, retrying queue of messages to keep in
// sync with one Slack channel: alerts, their edits and their resolutions.
//
// Callers never wait on Slack: Put returns at once. One goroutine (Run)
// sends, one call per pace (Slack allows about one message per second per
// channel): new messages first, then edits, the oldest first. The latest version per key wins:
// an alert edited or resolved before its post went out is posted as it is
// now, once. A failed call is retried with backoff, so a message is
// reported sent (its ts, through the item's Sent callback) only when Slack
// has it.
package outbox

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
)

// Slack is what the outbox needs of Slack, for one channel.
type Slack interface {
	// Post posts m and returns its ts.
	Post(ctx context.Context, m blocks.Message) (ts string, err error)
	// Update replaces the message at ts with m.
	Update(ctx context.Context, ts string, m blocks.Message) error
}

// Item is one version of one message.
type Item struct {
	// Key names the message: a later item with the same key replaces this
	// one if it has not gone out yet, and edits it once it has.
	Key string
	// TS is the message's ts when the caller knows it (it was posted
	// earlier): the item is then an edit. "" posts it, unless the outbox
	// has posted this key already.
	TS  string
	Msg blocks.Message
	// Sent, if set, is called once Slack has this version or a later one
	// (ts is the message's), or with the error when the outbox gives up:
	// a permanent error, too many attempts, or Close. It is called from the
	// outbox's goroutine and must not block for long.
	Sent func(ts string, err error)
}

// Options tune an Outbox; zero values take the defaults.
type Options struct {
	Pace       time.Duration // between calls; 1 s
	Backoff    time.Duration // before the first retry, doubling after; 1 s
	MaxBackoff time.Duration // 1 min
	Attempts   int           // calls per version before giving up; 10
	Log        *slog.Logger  // nil: slog.Default()
}

// Outbox is the queue. Its methods are safe for concurrent use.
type Outbox struct {
	slack Slack
	opt   Options

	mu      sync.Mutex
	entries map[string]*entry
	seq     uint64
	wake    chan struct{} // a buffered poke for Run
	idle    chan struct{} // closed and replaced whenever nothing is pending
}

type entry struct {
	key      string
	ts       string
	msg      blocks.Message
	version  uint64 // of msg; 0 once sent
	seq      uint64 // the queue position: when it started waiting
	sent     []func(string, error)
	attempts int
	retryAt  time.Time
	busy     bool // a call is in flight
}

// New makes an outbox sending through s; call Run to send.
func New(s Slack, opt Options) *Outbox {
	if opt.Pace <= 0 {
		opt.Pace = time.Second
	}
	if opt.Backoff <= 0 {
		opt.Backoff = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = time.Minute
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 10
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Outbox{slack: s, opt: opt, entries: map[string]*entry{}, wake: make(chan struct{}, 1), idle: make(chan struct{})}
}

// Put queues it and returns at once.
func (o *Outbox) Put(it Item) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.entries[it.Key]
	if e == nil {
		e = &entry{key: it.Key}
		o.entries[it.Key] = e
	}
	if e.ts == "" {
		e.ts = it.TS
	}
	o.seq++
	if e.version == 0 { // nothing waiting: join the end of the queue
		e.seq = o.seq
	}
	e.msg, e.version = it.Msg, o.seq
	if it.Sent != nil {
		e.sent = append(e.sent, it.Sent)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Pending counts the keys with a version not yet sent.
func (o *Outbox) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, e := range o.entries {
		if e.version != 0 {
			n++
		}
	}
	return n
}

// Flush waits until nothing is pending, or ctx ends (its error then).
func (o *Outbox) Flush(ctx context.Context) error {
	for {
		o.mu.Lock()
		idle := o.idle
		o.mu.Unlock()
		if o.Pending() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle:
		}
	}
}

// Run sends until ctx ends; a call in flight then fails with ctx's error,
// and what is still pending is given up (Sent callbacks get the error).
func (o *Outbox) Run(ctx context.Context) {
	defer o.giveUpAll(ctx)
	for {
		e, wait := o.next(time.Now())
		if e == nil {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-o.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		o.send(ctx, e)
		if sleep(ctx, o.opt.Pace) != nil {
			return
		}
	}
}

// next picks the pending entry to send now and marks it busy: new
// messages first (they are the news; edits of a known message can wait),
// then the oldest. nil and how long to wait when there is none.
func (o *Outbox) next(now time.Time) (*entry, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var best *entry
	wait := time.Hour
	before := func(a, b *entry) bool {
		if (a.ts == "") != (b.ts == "") {
			return a.ts == ""
		}
		return a.seq < b.seq
	}
	for _, e := range o.entries {
		switch {
		case e.version == 0 || e.busy:
		case e.retryAt.After(now):
			wait = min(wait, e.retryAt.Sub(now))
		case best == nil || before(e, best):
			best = e
		}
	}
	if best != nil {
		best.busy = true
	}
	return best, wait
}

// send makes one call for e and records its result.
func (o *Outbox) send(ctx context.Context, e *entry) {
	o.mu.Lock()
	ts, msg, version := e.ts, e.msg, e.version
	o.mu.Unlock()
	var err error
	if ts == "" {
		ts, err = o.slack.Post(ctx, msg)
	} else {
		err = o.slack.Update(ctx, ts, msg)
	}

	o.mu.Lock()
	e.busy = false
	var done []func(string, error)
	switch {
	case err == nil:
		e.ts, e.attempts, e.retryAt = ts, 0, time.Time{}
		if e.version == version { // nothing newer came meanwhile
			e.version, done, e.sent = 0, e.sent, nil
		}
	case ctx.Err() != nil: // shutting down: Run gives up on everything
	case permanent(err) || e.attempts+1 >= o.opt.Attempts:
		o.opt.Log.Error("slack message given up", slog.String("key", e.key), slog.Int("attempts", e.attempts+1), slog.String("error", err.Error()))
		e.version, e.attempts, done, e.sent = 0, 0, e.sent, nil
	default:
		e.attempts++
		e.retryAt = time.Now().Add(o.backoff(e.attempts, err))
		o.opt.Log.Warn("slack message will be retried", slog.String("key", e.key), slog.Int("attempt", e.attempts), slog.Time("at", e.retryAt), slog.String("error", err.Error()))
	}
	o.mu.Unlock()

	// The callbacks run before the entry can go: a Put meanwhile still
	// finds the ts here, and after it the caller knows the ts.
	for _, f := range done {
		if err != nil {
			f("", err)
		} else {
			f(ts, nil)
		}
	}
	o.mu.Lock()
	if e.version == 0 && !e.busy {
		delete(o.entries, e.key)
	}
	o.signalIdle()
	o.mu.Unlock()
}

// signalIdle wakes Flush when nothing is pending; call with o.mu held.
func (o *Outbox) signalIdle() {
	for _, e := range o.entries {
		if e.version != 0 {
			return
		}
	}
	close(o.idle)
	o.idle = make(chan struct{})
}

// giveUpAll tells every waiting caller that its message will not be sent.
func (o *Outbox) giveUpAll(ctx context.Context) {
	o.mu.Lock()
	var done []func(string, error)
	n := 0
	for k, e := range o.entries {
		if e.version != 0 {
			n++
			done = append(done, e.sent...)
		}
		delete(o.entries, k)
	}
	o.signalIdle()
	o.mu.Unlock()
	if n > 0 {
		o.opt.Log.Warn("slack messages not sent before shutdown", slog.Int("messages", n))
	}
	err := context.Cause(ctx)
	if err == nil {
		err = context.Canceled
	}
	for _, f := range done {
		f("", err)
	}
}

// backoff is the wait before retry number n: Slack's Retry-After when it
// gave one, else doubling from Options.Backoff.
func (o *Outbox) backoff(n int, err error) time.Duration {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) && rl.RetryAfter > 0 {
		return rl.RetryAfter
	}
	d := o.opt.Backoff
	for range n - 1 {
		d *= 2
		if d >= o.opt.MaxBackoff {
			return o.opt.MaxBackoff
		}
	}
	return d
}

// transient are the Slack error codes that say "try again later".
var transient = map[string]bool{"ratelimited": true, "internal_error": true, "fatal_error": true,
	"service_unavailable": true, "request_timeout": true}

// permanent says whether retrying err cannot help: Slack answered, and
// refused the message itself (channel_not_found, msg_blocks_too_long,
// message_not_found, …). Transport errors, timeouts and HTTP 5xx are
// worth retrying.
func permanent(err error) bool {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return !transient[se.Err]
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return sc.Code < 500 && sc.Code != 429
	}
	return false
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
