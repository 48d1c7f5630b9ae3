package fakeslack

import (
	"net/http"
)

// Fail makes the next n calls of method answer HTTP 500 (a Slack outage as
// the Web API shows it), without doing anything.
func (s *Server) Fail(method string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[method] += n
}

// Stall holds every call of method, from now until release is called, or
// until the caller gives up (its request's context ends: a client timeout).
// A call released is then answered as usual; one given up on is recorded
// with status 499 and changes nothing.
func (s *Server) Stall(method string) (release func()) {
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
func (s *Server) Stalled(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled[method]
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
