package demo

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestGuard: the page answers its own loopback name only (a rebinding DNS
// name is refused) and refuses posts from other origins.
func TestGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tc := range []struct {
		name, method, host, origin string
		want                       int
	}{
		{"loopback", "GET", "127.0.0.1:8080", "", http.StatusNoContent},
		{"localhost", "GET", "localhost:8080", "", http.StatusNoContent},
		{"rebinding", "GET", "evil.example:8080", "", http.StatusForbidden},
		{"same_origin_post", "POST", "127.0.0.1:8080", "http://127.0.0.1:8080", http.StatusNoContent},
		{"cross_origin_post", "POST", "127.0.0.1:8080", "http://evil.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/click", nil)
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			w := httptest.NewRecorder()
			guard(ok).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("status %d, want %d", w.Code, tc.want)
			}
			if w.Code == http.StatusNoContent && w.Header().Get("Content-Security-Policy") == "" {
				t.Error("no Content-Security-Policy")
			}
		})
	}
}
