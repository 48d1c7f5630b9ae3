// Package fakeaws is an in-process AWS for tests: the RDS and Secrets
// Manager APIs pgkill calls, every request's SigV4 signature checked.
package fakeaws

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Test credentials the fake accepts.
const (
	AccessKey = "AKIDPGKILLTEST"
	SecretKey = "pgkill-test-secret-key"
)

// Server is the fake, speaking the real wire formats over HTTP: the RDS
// Query API (form-encoded POST, XML answers shaped like
// DescribeDBInstances and DescribeDBClusters, paginated with Marker) and
// the Secrets Manager JSON API (GetSecretValue, chosen by the X-Amz-Target
// header). Every request must carry a valid SigV4 signature for the
// service and a region the fake knows, checked by this package's own
// implementation of the algorithm; a bad one is refused and recorded as a
// test failure. Tests point the AWS SDK at it with its base endpoint
// setting and the static test credentials. Its fields are changed through
// its methods, which are safe for concurrent use with the requests it
// serves.
type Server struct {
	*httptest.Server
	tb testing.TB

	mu        sync.Mutex
	instances map[string][]Instance // by region, in creation order
	clusters  map[string][]Cluster  // by region
	secrets   map[string]*Secret    // by ARN and by name
	pageSize  int
	rdsErr    *APIError // answered to every RDS call while set
	calls     []Call
}

// Call is one request the fake answered.
type Call struct {
	Service, Region, Action string
	// Retry is true for the SDK's second and later attempts of one call
	// (its amz-sdk-request header says attempt=2 and up).
	Retry bool
}

// APIError is an error answer, e.g. {403, "AccessDenied", "…"}.
type APIError struct {
	Status  int
	Code    string
	Message string
}

// New starts a fake; it stops when the test ends.
func New(tb testing.TB) *Server {
	s := &Server{
		tb:        tb,
		instances: map[string][]Instance{},
		clusters:  map[string][]Cluster{},
		secrets:   map[string]*Secret{},
		pageSize:  100,
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// Calls returns the requests answered so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Count counts the calls of one action, not their retries: the SDK
// retries a call whose connection broke (over loopback, aws-sdk-go-v2 issue
// #2737), which says nothing about the code under test.
func (s *Server) Count(action string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Action == action && !c.Retry {
			n++
		}
	}
	return n
}

func secretOf(key string) (string, bool) {
	return SecretKey, key == AccessKey
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	scope, err := verifyHeader(r, body, secretOf)
	if err != nil {
		s.tb.Errorf("fakeaws: %s %s: bad signature: %v", r.Method, r.URL, err)
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodPost {
		s.tb.Errorf("fakeaws: method %s", r.Method)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	switch target := r.Header.Get("X-Amz-Target"); {
	case target != "":
		s.want(scope, "secretsmanager")
		s.secretsManager(w, r, scope.Region, target, body)
	case strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded"):
		s.want(scope, "rds")
		s.rds(w, r, scope.Region, string(body))
	default:
		s.tb.Errorf("fakeaws: neither a Query API form nor X-Amz-Target: %v", r.Header)
		http.Error(w, "unknown protocol", http.StatusBadRequest)
	}
}

func (s *Server) want(scope Scope, service string) {
	if scope.Service != service {
		s.tb.Errorf("fakeaws: %s call signed for service %q", service, scope.Service)
	}
	if scope.Region == "" {
		s.tb.Errorf("fakeaws: %s call signed without a region", service)
	}
}

func (s *Server) record(r *http.Request, service, region, action string) {
	attempt, _, _ := strings.Cut(r.Header.Get("Amz-Sdk-Request"), ";") // "attempt=2; max=3"
	retry := attempt != "" && attempt != "attempt=1"
	s.mu.Lock()
	s.calls = append(s.calls, Call{service, region, action, retry})
	s.mu.Unlock()
}

// requestID makes the RequestId every answer carries.
func (s *Server) requestID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", len(s.calls))
}
