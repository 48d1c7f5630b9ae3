package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pgkill/pgkill/bot/lease"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgkill/pgkill/bot/discovery"
)

// health is what /readyz reports: the Socket Mode connection and each
// target's last check (a listing, a poll or the health loop's ping).
type health struct {
	mu        sync.Mutex
	connected bool
	targets   map[string]targetHealth
}

type targetHealth struct {
	OK        bool      `json:"ok"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at"`
}

func (h *health) setConnected(up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.connected = up
}

func (h *health) checked(target string, err error, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	th := targetHealth{OK: err == nil, CheckedAt: at}
	if err != nil {
		th.Error = err.Error()
	}
	h.targets[target] = th
}

type readiness struct {
	Ready    bool                    `json:"ready"`
	Replica  string                  `json:"replica"`
	Slack    string                  `json:"slack"`
	Targets  map[string]targetHealth `json:"targets"`
	NotReady []string                `json:"not_ready,omitempty"`
	// Discovery is PGKILL_RDS_DISCOVER's state. A failing refresh keeps
	// the last known fleet, which pgkill goes on serving: it shows here
	// and in the metrics, and does not make pgkill unready.
	Discovery *discovery.Detail `json:"discovery,omitempty"`

	// With leases (a state store, alerts on): the targets this replica
	// polls, how many replicas are alive, and the store's state.
	Leases       *[]string `json:"leases,omitempty"`
	LiveReplicas int       `json:"live_replicas,omitempty"`
	StateStore   string    `json:"state_store,omitempty"`
}

// readiness is what /readyz says. Without leases every target's last check
// counts; with leases only the targets this replica polls do (the others'
// entries are what its listings saw, if anything), and a state store it
// cannot reach makes it not ready: it takes no leases then.
func (h *health) readiness(replica string, names []string, st *lease.Status) readiness {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := readiness{Ready: true, Replica: replica, Slack: "connected", Targets: map[string]targetHealth{}}
	for n := range h.targets { // targets that left the fleet
		if !slices.Contains(names, n) {
			delete(h.targets, n)
		}
	}
	if st != nil {
		held := st.Held
		if held == nil {
			held = []string{}
		}
		r.Leases, r.LiveReplicas, r.StateStore = &held, st.Live, "ok"
		if st.Err != nil {
			r.Ready = false
			r.StateStore = fmt.Sprintf("unreachable since %s: %s; taking no leases", st.ErrAt.UTC().Format(time.RFC3339), st.Err)
			r.NotReady = append(r.NotReady, "state store")
		}
	}
	if !h.connected {
		r.Ready, r.Slack = false, "disconnected"
		r.NotReady = append(r.NotReady, "slack")
	}
	for _, n := range names {
		th, ok := h.targets[n]
		gates := st == nil || slices.Contains(st.Held, n)
		if !ok && !gates {
			continue
		}
		if !ok {
			th.Error = "not checked yet"
		}
		r.Targets[n] = th
		if !th.OK && gates {
			r.Ready = false
			r.NotReady = append(r.NotReady, "target "+n)
		}
	}
	sort.Strings(r.NotReady)
	return r
}

// Handler serves /healthz (the process is up), /readyz (Socket Mode
// connected, every target it polls answering, and with leases the state
// store reachable; 503 with a JSON body naming what is not ready) and
// /metrics (Prometheus).
func (b *Bot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var st *lease.Status
		if b.leases != nil {
			s := b.leases.Status()
			st = &s
		}
		r := b.health.readiness(b.cfg.ReplicaName(), b.db.Names(), st)
		if b.discovery != nil {
			d := b.discovery.Detail()
			r.Discovery = &d
		}
		w.Header().Set("Content-Type", "application/json")
		if !r.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(r)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.metrics.Reg, promhttp.HandlerOpts{}))
	return mux
}

// checkTargets pings every target each PGKILL_POLL_INTERVAL so /readyz has
// a recent answer when no alert watcher polls them.
func (b *Bot) checkTargets(ctx context.Context) {
	t := time.NewTicker(b.cfg.PollInterval)
	defer t.Stop()
	for {
		for _, n := range b.db.Names() {
			pctx, cancel := context.WithTimeout(ctx, b.cfg.QueryTimeout())
			err := b.db.Ping(pctx, n)
			cancel()
			if ctx.Err() != nil {
				return
			}
			b.health.checked(n, err, time.Now())
			b.metrics.Up(n, err == nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
