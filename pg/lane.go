package pg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// lane is one dedicated connection to a target. Its statements run one at a
// time, each detached from the caller that asked for it: a caller that
// stops waiting (its context ends) gets an error at once, while the
// statement runs on to its end and the connection stays open. A statement
// waiting on a lightweight lock cannot be cancelled, and closing the socket
// under it would not free the server's session either: it would only cost a
// new connection, which in a lock pile-up waits as long.
//
// Connection attempts are one at a time. An attempt the server accepted but
// did not finish (a silent server: in a lock pile-up every new session
// waits until it ends, holding a connection slot) is followed by a pause
// before the next, so pgkill never adds a connection storm of its own.
type lane struct {
	name   string // "lifeline" or "lock-table connection", for messages
	target string
	// open makes one connection attempt; accepted is called once the
	// server accepted the TCP connection.
	open func(ctx context.Context, accepted func()) (*pgx.Conn, error)
	// warm runs on each new connection before any statement (nil: none);
	// its failure fails the attempt.
	warm func(ctx context.Context, c *pgx.Conn) error
	// late bounds a detached statement (the lane's statement_timeout on
	// the server is about as much).
	late time.Duration
	// wait is how long an attempt may last unless its caller says
	// (WithConnectWait); connect is the least it may last.
	wait, connect time.Duration
	waiting       func(Wait) // nil: nobody is told

	turn chan struct{} // capacity 1: held by the job using the connection

	mu        sync.Mutex
	conn      *pgx.Conn
	busySince time.Time // zero when idle
	busyWhat  string    // what holds the turn, for messages
	accepted  bool      // the current attempt's TCP connection was accepted
	retryAt   time.Time // no attempt before (after one that timed out)
	lastErr   error     // why the last attempt failed
	pauses    int       // consecutive timed-out attempts
	closed    bool
}

// Wait describes a connection attempt that is taking long, for a progress
// line: Options.Waiting is called with it a second into the attempt and
// every 10 seconds after.
type Wait struct {
	Target string
	// Accepted: the server accepted the TCP connection and has not yet
	// started the session (in a lock pile-up new sessions wait until it
	// ends); false: the TCP connection itself is not yet made.
	Accepted bool
	For      time.Duration // since the attempt began
	Limit    time.Duration // when the attempt is given up
}

// Pause after a connection attempt that timed out with the server silent,
// doubling with each such attempt in a row.
const (
	firstPause = 10 * time.Second
	maxPause   = 2 * time.Minute
)

func newLane(name, target string, opts Options, late time.Duration) *lane {
	return &lane{name: name, target: target, late: late, wait: opts.ConnectWait, connect: opts.ConnectTimeout,
		waiting: opts.Waiting, turn: make(chan struct{}, 1)}
}

type connectWaitKey struct{}

// WithConnectWait returns ctx, under which a connection attempt may wait
// up to d for a server that accepted the connection to start the session
// (Options.ConnectWait otherwise). The command line waits long: in a lock
// pile-up new sessions start only when it ends, and giving up early only
// leaves the server's session behind, holding a connection slot.
func WithConnectWait(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, connectWaitKey{}, d)
}

// future is the result of a job, read after done is closed.
type future[T any] struct {
	done    chan struct{}
	started time.Time
	val     T
	err     error
	// run is idle, running (a run of fn is under way) or abandoned (its
	// caller stopped waiting while no run was under way: fn runs no more).
	// A run starts, and a caller abandons, only by changing it from idle:
	// whichever comes first, the other cannot follow.
	run atomic.Int32
}

const (
	idle int32 = iota
	running
	abandoned
)

func (f *future[T]) finish(v T, err error) {
	f.val, f.err = v, err
	close(f.done)
}

// ready reports whether the result is in.
func (f *future[T]) ready() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// wait waits for the result until ctx ends; then the error says what l was
// busy with. The job goes on for whoever else waits for it.
func (f *future[T]) wait(ctx context.Context, l *lane) (T, error) {
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		var zero T
		return zero, l.stillBusy(ctx.Err())
	}
}

// start marks a run of fn as under way, unless its caller (ctx) stopped
// waiting: then it reports false and fn must not run.
func (f *future[T]) start(ctx context.Context) bool {
	return ctx.Err() == nil && f.run.CompareAndSwap(idle, running)
}

// abandon is the caller's giving up: fn starts no more.
func (f *future[T]) abandon() { f.run.CompareAndSwap(idle, abandoned) }

// errNotStarted: the caller had stopped waiting before fn could run, so
// the job never ran it.
var errNotStarted = errors.New("not started: the caller stopped waiting first")

// effect is what a statement does to the server. It decides whether the
// statement may be sent again when its connection failed under it.
type effect int

const (
	// reads: it only reads, so it runs again on a new connection when the
	// server ended the session before or while it ran (retryable).
	reads effect = iota
	// signals: it signals backends. It is sent again only when pgx wrote
	// none of it (unsent); otherwise the server may have carried it out,
	// and a second run would answer for a server the first one changed (a
	// terminated backend reads as gone: "nothing was signalled"). It is
	// sent only on a connection just checked (live), so that a session the
	// server ended while idle costs a reconnect, not an unknown outcome.
	signals
)

// again reports whether a statement doing e whose run failed with err
// runs once more on a new connection.
func (e effect) again(err error) bool {
	if e == signals {
		return unsent(err)
	}
	return retryable(err)
}

// submit runs fn, which does eff, on l's connection when it is free,
// connecting first when needed. fn runs only if the caller (ctx) still
// waits once the connection is ready: a connection attempt goes on after
// its caller stopped waiting (see ready), the statement does not. Once
// started, fn runs to its end, detached from ctx, bounded by l.late. A
// connection fn leaves broken is closed; fn runs once more on a new one
// when eff allows it (effect.again) and the caller still waits.
func submit[T any](ctx context.Context, l *lane, what string, eff effect, fn func(context.Context, *pgx.Conn) (T, error)) *future[T] {
	f := &future[T]{done: make(chan struct{}), started: time.Now()}
	go func() {
		var zero T
		select {
		case l.turn <- struct{}{}:
		case <-ctx.Done():
			f.finish(zero, errNotStarted)
			return
		}
		defer l.release()
		v, err := zero, error(errNotStarted)
		for attempt := 0; attempt < 2 && ctx.Err() == nil; attempt++ {
			conn, cerr := l.ready(ctx)
			if cerr == nil && eff == signals {
				conn, cerr = l.live(ctx, conn)
			}
			if cerr != nil {
				v, err = zero, cerr
				break
			}
			if !f.start(ctx) {
				break
			}
			v, err = runOn(l, conn, what, fn)
			if !eff.again(err) {
				if eff == signals && err != nil && conn.IsClosed() {
					err = l.lost(what, err)
				}
				break
			}
			l.drop(conn)
			f.run.Store(idle)
		}
		f.finish(v, err)
	}()
	return f
}

// call is submit, then waiting for the result until ctx ends. A caller
// that stops waiting abandons the job: fn does not start after call has
// returned (one already under way runs to its end).
func call[T any](ctx context.Context, l *lane, what string, eff effect, fn func(context.Context, *pgx.Conn) (T, error)) (T, error) {
	f := submit(ctx, l, what, eff, fn)
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		f.abandon()
		if f.ready() {
			return f.val, f.err
		}
		var zero T
		return zero, l.stillBusy(ctx.Err())
	}
}

// live returns conn if the server has not closed it, or else a new
// connection. It sends nothing: pgx reads what the server may have sent
// while the connection was idle (a session ended by a restart or
// pg_terminate_backend says so before it closes the socket).
func (l *lane) live(ctx context.Context, conn *pgx.Conn) (*pgx.Conn, error) {
	if err := conn.PgConn().CheckConn(); err == nil && !conn.IsClosed() {
		return conn, nil
	}
	l.drop(conn)
	return l.ready(ctx)
}

// lost is the error of a statement whose connection was lost (broken, or
// closed by pgx when no answer came in time) after it was sent and before
// its answer came: the server may have carried it out.
func (l *lane) lost(what string, err error) error {
	kind := ErrUnavailable
	if e := translate(err); errors.Is(e, ErrTimeout) {
		kind = ErrTimeout
	}
	return &Error{Kind: kind, err: err,
		Message: fmt.Sprintf("pgkill's %s to %s was lost after %s was sent, before its answer came (%s); it is not sent again", l.name, l.target, what, message(err))}
}

// runOn runs fn on conn, detached, and closes conn if fn left it broken.
func runOn[T any](l *lane, conn *pgx.Conn, what string, fn func(context.Context, *pgx.Conn) (T, error)) (T, error) {
	l.busy(what)
	ctx, cancel := context.WithTimeout(context.Background(), l.late)
	defer cancel()
	v, err := fn(ctx, conn)
	if conn.IsClosed() {
		l.drop(conn)
	}
	return v, err
}

// busy records what holds the turn.
func (l *lane) busy(what string) {
	l.mu.Lock()
	l.busySince, l.busyWhat = time.Now(), what
	l.mu.Unlock()
}

// release ends a job's turn.
func (l *lane) release() {
	l.mu.Lock()
	l.busySince, l.busyWhat = time.Time{}, ""
	l.mu.Unlock()
	<-l.turn
}

// stuck reports whether a job has held the lane for longer than d: a
// statement waiting on the lock table, or a connection attempt the server
// holds. Callers that cannot wait do not queue behind it.
func (l *lane) stuck(d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.busySince.IsZero() && time.Since(l.busySince) > d
}

// stillBusy is the error of a caller that stopped waiting: what the lane
// is doing, and since when.
func (l *lane) stillBusy(cause error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	msg := fmt.Sprintf("no answer on pgkill's %s to %s", l.name, l.target)
	switch {
	case l.busySince.IsZero():
	case l.busyWhat == "connecting" && l.accepted:
		msg += fmt.Sprintf(": the server accepted the connection %s ago and has not started the session yet (in a lock pile-up new sessions wait until it ends)", seconds(time.Since(l.busySince)))
	case l.busyWhat == "connecting":
		msg += fmt.Sprintf(": connecting for %s", seconds(time.Since(l.busySince)))
	default:
		msg += fmt.Sprintf(": %s has run for %s", l.busyWhat, seconds(time.Since(l.busySince)))
	}
	return &Error{Kind: ErrTimeout, Message: msg, err: cause}
}

// ready returns the open connection, or makes one attempt to open it (the
// caller holds the turn). An attempt lasts as long as the caller that
// started it said (WithConnectWait), or l.wait, and never less than
// l.connect; callers that stop waiting earlier do not end it.
func (l *lane) ready(ctx context.Context) (*pgx.Conn, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, &Error{Kind: ErrUnavailable, Message: "target " + l.target + " is closed (it left the fleet)"}
	}
	if l.conn != nil && !l.conn.IsClosed() {
		c := l.conn
		l.mu.Unlock()
		return c, nil
	}
	l.conn = nil
	if wait := time.Until(l.retryAt); wait > 0 {
		err := fmt.Errorf("pgkill opens no new connection to %s before %s (in %s): %w; a silent server is most often stalled by a lock pile-up, which keeps each new session (and its connection slot) until it ends, so pgkill spaces its attempts",
			l.target, l.retryAt.Format("15:04:05"), seconds(wait), l.lastErr)
		l.mu.Unlock()
		return nil, &Error{Kind: ErrUnavailable, Message: err.Error(), err: err}
	}
	l.busySince, l.busyWhat, l.accepted = time.Now(), "connecting", false
	l.mu.Unlock()

	limit := l.wait
	if d, ok := ctx.Value(connectWaitKey{}).(time.Duration); ok {
		limit = d
	}
	limit = max(limit, l.connect)
	actx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	stop := l.report(limit)
	conn, err := l.open(actx, func() {
		l.mu.Lock()
		l.accepted = true
		l.mu.Unlock()
	})
	if err == nil && l.warm != nil {
		if err = l.warm(actx, conn); err != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
	stop()

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.lastErr = err
		if l.accepted && actx.Err() != nil {
			pause := firstPause << min(l.pauses, 4)
			l.retryAt, l.pauses = time.Now().Add(min(pause, maxPause)), l.pauses+1
			err = &Error{Kind: ErrTimeout, Message: fmt.Sprintf("the server accepted pgkill's connection but had not started the session after %s (in a lock pile-up new sessions wait until it ends)", seconds(limit)), err: err}
			l.lastErr = err
		}
		return nil, err
	}
	l.pauses, l.retryAt = 0, time.Time{}
	if l.closed {
		conn.Close(context.Background())
		return nil, &Error{Kind: ErrUnavailable, Message: "target " + l.target + " is closed (it left the fleet)"}
	}
	l.conn = conn
	return conn, nil
}

// report calls l.waiting a second into an attempt and every 10 seconds
// after, until stop is called.
func (l *lane) report(limit time.Duration) (stop func()) {
	if l.waiting == nil {
		return func() {}
	}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTimer(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				l.mu.Lock()
				accepted := l.accepted
				l.mu.Unlock()
				l.waiting(Wait{Target: l.target, Accepted: accepted, For: time.Since(start).Round(time.Second), Limit: limit})
				t.Reset(10 * time.Second)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// drop closes conn if it is still l's connection.
func (l *lane) drop(conn *pgx.Conn) {
	l.mu.Lock()
	if l.conn == conn {
		l.conn = nil
	}
	l.mu.Unlock()
	conn.Close(context.Background())
}

// up reports whether l has an open connection.
func (l *lane) up() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil && !l.conn.IsClosed()
}

// close refuses further jobs and closes the connection: once the job
// running on it has ended, or after wait, when closing the socket is what
// ends a statement stuck on the server.
func (l *lane) close(wait time.Duration) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case l.turn <- struct{}{}:
		l.mu.Lock()
		c := l.conn
		l.conn = nil
		l.mu.Unlock()
		if c != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.Close(ctx)
			cancel()
		}
		<-l.turn
	case <-timer.C:
		l.mu.Lock()
		c := l.conn
		l.mu.Unlock()
		if c != nil {
			_ = c.PgConn().Conn().Close() // safe beside the job using it: the job then fails
		}
	}
}

// seconds is a duration as it was measured: 9.4s, 120ms.
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
