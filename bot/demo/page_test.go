package demo

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPageGuard: the page is behind bot/loopback's guard (a rebound name
// and another site's posts are refused, framing is forbidden) and allows
// no script or style but its own.
func TestPageGuard(t *testing.T) {
	h := NewPage(nil, "/pgkill", People, Channels, time.Time{}).Handler()
	for _, tc := range []struct {
		name, method, path, host, origin string
		want                             int
	}{
		{"own_page", "GET", "/", "127.0.0.1:8080", "", http.StatusOK},
		{"rebound_name", "GET", "/", "evil.example:8080", "", http.StatusForbidden},
		{"cross_origin_command", "POST", "/command", "127.0.0.1:8080", "http://evil.example", http.StatusForbidden},
		{"cross_origin_click", "POST", "/click", "127.0.0.1:8080", "http://evil.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(`{}`))
			r.Host = tc.host
			r.Header.Set("Content-Type", "application/json")
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
			if w.Code != http.StatusOK {
				return
			}
			csp := w.Header().Values("Content-Security-Policy")
			if !slices.Contains(csp, "frame-ancestors 'none'") || !slices.ContainsFunc(csp, func(p string) bool { return strings.Contains(p, "default-src 'self'") }) {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			if w.Header().Get("X-Frame-Options") != "DENY" {
				t.Error("no X-Frame-Options: DENY")
			}
		})
	}
}
