// Package loopback guards HTTP servers meant only for the person at this
// machine (the demo's page and its Slack stand-in) against other web sites.
package loopback

import (
	"net"
	"net/http"
	"slices"
)

// Guard wraps next and refuses, with 403 and a sentence saying why:
//   - a request addressed to any host name but 127.0.0.1 or localhost: a
//     web site can rebind a DNS name of its own to 127.0.0.1 and so reach a
//     loopback port, but the browser still sends that name as the Host;
//   - a request whose Origin is set and is neither the server's own origin
//     nor one of origins: browsers set Origin on every cross-origin POST and
//     on every WebSocket handshake, and a site cannot choose its value.
//
// It also forbids browsers to show what it serves inside another site's
// frame (clickjacking), in the words of today's browsers
// (Content-Security-Policy: frame-ancestors) and of older ones
// (X-Frame-Options). A handler inside may add a policy of its own: a
// browser enforces every Content-Security-Policy header it gets.
func Guard(next http.Handler, origins ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Host(r) {
			http.Error(w, "this server answers on 127.0.0.1 and localhost only", http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && !slices.Contains(origins, o) {
			http.Error(w, "a request from another web site ("+o+") is refused", http.StatusForbidden)
			return
		}
		w.Header().Add("Content-Security-Policy", "frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// Host reports whether r is addressed to 127.0.0.1 or localhost (any
// port).
func Host(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	return host == "127.0.0.1" || host == "localhost"
}
