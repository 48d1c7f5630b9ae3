// Package outbox is pgkill's one way to write to Slack: every message,
// edit and private answer is put here and sent by one sender, which paces,
// orders and retries them, so that no caller ever waits on Slack.
package outbox

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/blocks"
)

// Slack is what the outbox needs of Slack.
type Slack interface {
	// Post posts m in channel (in thread, when set) and returns its ts.
	Post(ctx context.Context, channel, thread string, m blocks.Message) (ts string, err error)
	// Update replaces the message at channel/ts with m.
	Update(ctx context.Context, channel, ts string, m blocks.Message) error
	// Respond answers through an interaction's response_url: ephemeral
	// (only its user sees it) unless inChannel.
	Respond(ctx context.Context, url string, inChannel bool, m blocks.Message) error
}

// Item is one version of one message.
type Item struct {
	// Key names the message: a later item with the same key replaces this
	// one if it has not gone out yet, and edits it once it has.
	Key string
	// Channel is where it goes; Thread, when set, the thread it goes in.
	Channel, Thread string
	// TS is the message's ts when the caller knows it: the item is an edit.
	// "" posts it, unless the outbox has posted this key already.
	TS string
	// URL, when set, sends it through an interaction's response_url
	// instead (Channel and TS unused), in the channel when InChannel.
	URL       string
	InChannel bool
	// Version orders versions of one key that are put from several places:
	// an item with a lower version than one put before is dropped. 0 takes
	// the order of Put.
	Version uint64
	// Within, when set, gives up on this item once its last attempt failed
	// that long after it was put: for answers worth little when late (a
	// listing, which then goes another way). 0 retries up to Attempts.
	Within time.Duration
	// Still, when set, is asked right before each attempt: false gives the
	// item up (an alert whose target this replica no longer polls).
	Still func() bool
	Msg   blocks.Message
	// Sent, if set, is called once Slack has this version or a later one
	// (ts is the message's; "" for a response), or with the error when the
	// outbox gives up: a permanent error, too many attempts, or the end of
	// Run. It is called from a sender goroutine and must not block for long.
	Sent func(ts string, err error)
}

// Options tune an Outbox; zero values take the defaults.
type Options struct {
	// Pace is the time between messages to one channel once its Burst is
	// spent: Slack allows about one message per second per channel. 1 s.
	Pace  time.Duration
	Burst int // messages a quiet channel may take at once; 3
	// Backoff is the wait before the first retry, doubling after, with
	// jitter; a Retry-After Slack gives is honoured. 1 s, at most MaxBackoff (1 min).
	Backoff, MaxBackoff time.Duration
	Attempts            int           // calls per version before giving up; 10
	Remember            time.Duration // how long a posted key's ts is kept for later edits; 1 h
	Log                 *slog.Logger  // nil: slog.Default()
	// Retried, if set, is told of every retry, with the Web API method.
	Retried func(method string)
}

// Outbox is the queue. Its methods are safe for concurrent use.
//
// Order: in one channel (or one response_url), new messages go out in the
// order they were put, and each before any edit waiting there; a message
// waiting for a retry holds back the new messages after it, never another
// channel. Edits of one message are merged: the latest version wins.
type Outbox struct {
	slack Slack
	opt   Options

	mu      sync.Mutex
	entries map[string]*entry
	lanes   map[string]*lane
	seq     uint64
	wake    chan struct{} // a buffered poke for Run
	idle    chan struct{} // closed and replaced whenever nothing is pending
}

type entry struct {
	key       string
	lane      string
	channel   string
	thread    string
	url       string
	inChannel bool
	ts        string
	msg       blocks.Message
	version   uint64 // the caller's (Item.Version), of msg
	waiting   uint64 // the queue position of the version waiting; 0 when none
	latest    uint64 // the Put that gave msg
	sent      []func(string, error)
	attempts  int
	retryAt   time.Time
	busy      bool      // a call is in flight, or its callbacks run
	busyLane  *lane     // the lane busy with that call: e.lane may change meanwhile (a Put)
	doneAt    time.Time // when the last version went out
	within    time.Duration
	putAt     time.Time
	still     func() bool
}

// lane is one channel's (or response_url's) pacing.
type lane struct {
	tokens float64
	at     time.Time // when tokens was counted
	busy   bool
}

// New makes an outbox sending through s; call Run to send.
func New(s Slack, opt Options) *Outbox {
	if opt.Pace <= 0 {
		opt.Pace = time.Second
	}
	if opt.Burst <= 0 {
		opt.Burst = 3
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
	if opt.Remember <= 0 {
		opt.Remember = time.Hour
	}
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Outbox{slack: s, opt: opt, entries: map[string]*entry{}, lanes: map[string]*lane{},
		wake: make(chan struct{}, 1), idle: make(chan struct{})}
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
	if it.Version != 0 && it.Version < e.version {
		return // a newer version was put already
	}
	e.channel, e.thread, e.url, e.inChannel = it.Channel, it.Thread, it.URL, it.InChannel
	e.lane = "channel " + it.Channel
	if it.URL != "" {
		e.lane = "url " + it.URL
	}
	if it.TS != "" {
		// The message named wins over one this outbox posted for the key:
		// another process may have posted the recorded one.
		e.ts = it.TS
	}
	o.seq++
	if e.waiting == 0 { // nothing waiting: join the end of the queue
		e.waiting = o.seq
	}
	e.msg, e.version, e.latest, e.within, e.still = it.Msg, it.Version, o.seq, it.Within, it.Still
	if e.waiting == o.seq {
		e.putAt = time.Now()
	}
	if it.Sent != nil {
		e.sent = append(e.sent, it.Sent)
	}
	o.poke()
}

func (o *Outbox) poke() {
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
		if e.waiting != 0 || e.busy {
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

// Run sends until ctx ends; calls in flight then fail with ctx's error,
// and what is still pending is given up (Sent callbacks get the error).
func (o *Outbox) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		o.giveUpAll(ctx)
	}()
	for {
		ready, wait := o.next(time.Now())
		for _, e := range ready {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o.send(ctx, e)
			}()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-o.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// next picks, for every lane free to send now, the entry to send — its
// oldest new message, unless that one waits for a retry; then its oldest
// edit that may go — and marks it and its lane busy. It also returns how
// long until something may be due.
func (o *Outbox) next(now time.Time) ([]*entry, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forget(now)
	news, edits := map[string]*entry{}, map[string]*entry{}
	wait := time.Hour
	for _, e := range o.entries {
		if e.waiting == 0 || e.busy {
			continue
		}
		if isNew(e) {
			if b := news[e.lane]; b == nil || e.waiting < b.waiting {
				news[e.lane] = e
			}
			continue
		}
		if e.retryAt.After(now) {
			wait = min(wait, e.retryAt.Sub(now))
			continue
		}
		if b := edits[e.lane]; b == nil || e.waiting < b.waiting {
			edits[e.lane] = e
		}
	}
	var ready []*entry
	pick := func(name string, e *entry) {
		l := o.lane(name, now)
		if l.busy {
			return
		}
		if e.url == "" && l.tokens < 1 {
			wait = min(wait, time.Duration((1-l.tokens)*float64(o.opt.Pace)))
			return
		}
		if e.url == "" {
			l.tokens--
		}
		l.busy, e.busy, e.busyLane = true, true, l
		ready = append(ready, e)
	}
	for name, e := range news {
		if !e.retryAt.After(now) {
			pick(name, e)
			continue
		}
		wait = min(wait, e.retryAt.Sub(now))
	}
	for name, e := range edits {
		pick(name, e) // a lane that just took its news is busy: the edit waits
	}
	return ready, max(wait, time.Millisecond)
}

// isNew reports whether e's next call posts a new message.
func isNew(e *entry) bool { return e.ts == "" && e.url == "" }

// lane returns the pacing of name with its tokens counted up to now; call
// with o.mu held.
func (o *Outbox) lane(name string, now time.Time) *lane {
	l := o.lanes[name]
	if l == nil {
		l = &lane{tokens: float64(o.opt.Burst), at: now}
		o.lanes[name] = l
	}
	l.tokens = min(float64(o.opt.Burst), l.tokens+float64(now.Sub(l.at))/float64(o.opt.Pace))
	l.at = now
	return l
}

// forget drops entries sent long ago, and lanes with nothing left; call
// with o.mu held.
func (o *Outbox) forget(now time.Time) {
	for k, e := range o.entries {
		if e.waiting == 0 && !e.busy && (e.url != "" || now.Sub(e.doneAt) > o.opt.Remember) {
			delete(o.entries, k)
		}
	}
	if len(o.lanes) > 1000 {
		for name, l := range o.lanes {
			if !l.busy && l.tokens >= float64(o.opt.Burst) {
				delete(o.lanes, name)
			}
		}
	}
}

// send makes one call for e and records its result.
func (o *Outbox) send(ctx context.Context, e *entry) {
	o.mu.Lock()
	ts, msg, latest := e.ts, e.msg, e.latest
	channel, thread, url, inChannel, still := e.channel, e.thread, e.url, e.inChannel, e.still
	o.mu.Unlock()
	var err error
	method := "chat.update"
	switch {
	case still != nil && !still():
		err = ErrNotStill
	case url != "":
		method = "response_url"
		err = o.slack.Respond(ctx, url, inChannel, msg)
	case ts == "":
		method = "chat.postMessage"
		ts, err = o.slack.Post(ctx, channel, thread, msg)
	default:
		err = o.slack.Update(ctx, channel, ts, msg)
	}

	o.mu.Lock()
	var done []func(string, error)
	var rl *slack.RateLimitedError
	switch {
	case err == nil:
		if e.ts == "" { // a message named meanwhile (Put) wins over the one just posted
			e.ts = ts
		}
		e.attempts, e.retryAt = 0, time.Time{}
		if e.latest == latest { // nothing newer came meanwhile
			e.waiting, e.doneAt, done, e.sent = 0, time.Now(), e.sent, nil
		}
	case ctx.Err() != nil: // shutting down: Run gives up on everything
	case errors.Is(err, ErrNotStill):
		e.waiting, e.attempts, e.doneAt, done, e.sent = 0, 0, time.Now(), e.sent, nil
	case permanent(err) || e.attempts+1 >= o.opt.Attempts || e.within > 0 && time.Since(e.putAt) >= e.within && !errors.As(err, &rl):
		o.opt.Log.Error("slack message given up", slog.String("method", method), slog.String("key", e.key), slog.Int("attempts", e.attempts+1), slog.String("error", err.Error()))
		e.waiting, e.attempts, e.doneAt, done, e.sent = 0, 0, time.Now(), e.sent, nil
	default:
		e.attempts++
		e.retryAt = time.Now().Add(o.backoff(e.attempts, err))
		if errors.As(err, &rl) {
			o.opt.Log.Warn("slack rate limited", slog.String("method", method), slog.Duration("retry_after", rl.RetryAfter), slog.Int("attempt", e.attempts))
		}
		o.opt.Log.Warn("slack message will be retried", slog.String("method", method), slog.String("key", e.key), slog.Int("attempt", e.attempts), slog.Time("at", e.retryAt), slog.String("error", err.Error()))
		if o.opt.Retried != nil {
			o.opt.Retried(method)
		}
	}
	o.mu.Unlock()

	// The callbacks run before the entry can be forgotten: a Put meanwhile
	// still finds the ts here, and after it the caller knows it.
	for _, f := range done {
		if err != nil {
			f("", err)
		} else {
			f(ts, nil)
		}
	}
	o.mu.Lock()
	e.busy = false
	e.busyLane.busy = false // the lane it went out on, whatever Put did to e.lane since
	e.busyLane = nil
	o.signalIdle()
	o.mu.Unlock()
	o.poke()
}

// signalIdle wakes Flush when nothing is pending; call with o.mu held.
func (o *Outbox) signalIdle() {
	for _, e := range o.entries {
		if e.waiting != 0 || e.busy {
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
		if e.waiting != 0 {
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
// gave one, else doubling from Options.Backoff up to MaxBackoff, with
// jitter (between half and all of it) so that many messages failed together
// do not retry together.
func (o *Outbox) backoff(n int, err error) time.Duration {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) && rl.RetryAfter > 0 {
		return rl.RetryAfter + rand.N(rl.RetryAfter/10+time.Millisecond)
	}
	d := o.opt.Backoff
	for range n - 1 {
		d *= 2
		if d >= o.opt.MaxBackoff {
			d = o.opt.MaxBackoff
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

// ErrNotStill is the error of an item given up because its Still said so.
var ErrNotStill = errors.New("no longer to be sent")

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
