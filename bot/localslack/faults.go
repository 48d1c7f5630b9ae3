package localslack

import (
	"net/http"
	"slices"
)

// Faults make the Slack misbehave as the real one sometimes does: an
// outage, a rate limit, a call that hangs, a socket that dies. Tests use
// them to show the bot survives; the demo never does.
type Faults struct{ s *Server }

// Faults returns the server's fault injection.
func (s *Server) Faults() *Faults { return &Faults{s} }

// Fail makes the next n calls of method answer HTTP 500 (a Slack outage as
// the Web API shows it), without doing anything.
func (f *Faults) Fail(method string, n int) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.failing[method] += n
}

// RateLimit makes the next len(retryAfter) calls of method answer 429 with
// those Retry-After values (seconds).
func (f *Faults) RateLimit(method string, retryAfter ...int) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.limited[method] = append(f.s.limited[method], retryAfter...)
}

// Stall holds every call of method, from now until release is called, or
// until the caller gives up (its request's context ends: a client timeout).
// A call released is then answered as usual; one given up on is recorded
// with status 499 and changes nothing.
func (f *Faults) Stall(method string) (release func()) {
	s := f.s
	ch := make(chan struct{})
	s.mu.Lock()
	s.stalls[method] = ch
	s.mu.Unlock()
	var done bool
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if done {
			return
		}
		done = true
		close(ch)
		if s.stalls[method] == ch {
			delete(s.stalls, method)
		}
	}
}

// Stalled counts the calls of method a stall has held so far (released,
// given up on or still waiting).
func (f *Faults) Stalled(method string) int {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.stalled[method]
}

// StopPings stops the WebSocket pings: slack-go then declares the
// connection dead and reconnects.
func (f *Faults) StopPings() {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	f.s.pinging = false
}

// Disconnect sends Slack's disconnect message on every open connection
// (slack-go reconnects at once); ErrNoConnection when none is open.
func (f *Faults) Disconnect(reason string) error {
	s := f.s
	s.mu.Lock()
	conns := slices.Clone(s.ws)
	s.mu.Unlock()
	if len(conns) == 0 {
		return ErrNoConnection
	}
	for _, conn := range conns {
		if err := s.write(conn, map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "localslack"}}); err != nil {
			return err
		}
	}
	return nil
}

// DropSocket closes every WebSocket without a word, as a network failure
// would.
func (f *Faults) DropSocket() {
	f.s.mu.Lock()
	conns := slices.Clone(f.s.ws)
	f.s.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
	}
}

// stall waits out a stall of method; false when the caller gave up.
func (s *Server) stall(r *http.Request, method string, p map[string]string) bool {
	s.mu.Lock()
	ch, ok := s.stalls[method]
	if ok {
		s.stalled[method]++
		s.notify()
	}
	s.mu.Unlock()
	if !ok {
		return true
	}
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		s.calls = append(s.calls, Call{Method: method, Params: p, Status: 499})
		s.notify()
		return false
	}
}
