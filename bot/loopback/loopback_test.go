package loopback_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/pgkill/pgkill/bot/loopback"
)

// TestGuard: only loopback names are answered (a rebound DNS name is
// refused), a browser's request from another origin is refused unless that
// origin is allowed, and nothing it lets through may be framed.
func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	const slackGo = "https://api.slack.com"
	for _, tc := range []struct {
		name, method, host, origin string
		want                       int
	}{
		{"loopback", "GET", "127.0.0.1:8080", "", http.StatusNoContent},
		{"localhost", "GET", "localhost:8080", "", http.StatusNoContent},
		{"no_port", "GET", "127.0.0.1", "", http.StatusNoContent},
		{"rebound_name", "GET", "evil.example:8080", "", http.StatusForbidden},
		{"rebound_name_same_origin", "POST", "evil.example:8080", "http://evil.example:8080", http.StatusForbidden},
		{"loopback_suffix", "GET", "127.0.0.1.evil.example:8080", "", http.StatusForbidden},
		{"ipv6_unlistened", "GET", "[::1]:8080", "", http.StatusForbidden},
		{"same_origin_post", "POST", "127.0.0.1:8080", "http://127.0.0.1:8080", http.StatusNoContent},
		{"cross_origin_post", "POST", "127.0.0.1:8080", "http://evil.example", http.StatusForbidden},
		{"cross_origin_get", "GET", "127.0.0.1:8080", "http://evil.example", http.StatusForbidden},
		{"other_port", "POST", "127.0.0.1:8080", "http://127.0.0.1:9090", http.StatusForbidden},
		{"null_origin", "POST", "127.0.0.1:8080", "null", http.StatusForbidden},
		{"allowed_origin", "GET", "127.0.0.1:8080", slackGo, http.StatusNoContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/x", nil)
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			w := httptest.NewRecorder()
			loopback.Guard(ok, slackGo).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.want, w.Body)
			}
			if w.Code == http.StatusForbidden && w.Body.Len() < 20 {
				t.Errorf("refused without saying why: %q", w.Body)
			}
			if w.Code != http.StatusNoContent {
				return
			}
			if csp := w.Header().Values("Content-Security-Policy"); !slices.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy %q lets other sites frame it", csp)
			}
			if xfo := w.Header().Get("X-Frame-Options"); xfo != "DENY" {
				t.Errorf("X-Frame-Options %q, want DENY", xfo)
			}
		})
	}
}
