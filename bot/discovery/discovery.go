// Package discovery runs the refreshes of a discovered fleet
// (PGKILL_RDS_DISCOVER) in the bot and reports them on /readyz and in
// metrics.
package discovery

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgkill/pgkill/pg"
	pgaws "github.com/pgkill/pgkill/pg/aws"
)

// Refresher is what the loop needs of a *pgaws.Refresher.
type Refresher interface {
	// Refresh discovers once and sets the fleet; on error the fleet is
	// unchanged.
	Refresh(ctx context.Context) (pg.FleetChange, error)
	// Status is what the refreshes did so far.
	Status() pgaws.Status
	// Interval is the time between refreshes.
	Interval() time.Duration
}

// Loop refreshes the fleet on its interval and counts what happened: a
// refresh that fails leaves the fleet as it was (the Refresher guarantees
// it), and the loop makes that visible (Detail, the pgkill_discover*
// series). Safe for concurrent use.
type Loop struct {
	r        Refresher
	changed  func(pg.FleetChange)
	failures prometheus.Counter
	runs     *prometheus.CounterVec

	mu    sync.Mutex
	total int // failed refreshes since start
}

// New makes a loop over r whose metrics go to reg. changed, when not nil, is
// told every change a refresh made to the fleet (to forget removed
// targets).
func New(r Refresher, reg prometheus.Registerer, changed func(pg.FleetChange)) *Loop {
	l := &Loop{r: r, changed: changed,
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgkill_discovery_refresh_failures_total",
			Help: "Discovery refreshes that failed (the fleet was kept as it was)."}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_discovery_refreshes_total",
			Help: "Discovery refreshes, by result (ok, error)."}, []string{"result"}),
	}
	reg.MustRegister(l.failures, l.runs,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_discovered_targets",
			Help: "Targets in the fleet that discovery found (the last known, while refreshes fail)."},
			func() float64 { return float64(r.Status().Discovered) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_discovery_last_success_timestamp_seconds",
			Help: "When a discovery refresh last worked (Unix time)."},
			func() float64 { return unix(r.Status().LastSuccess) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_discovery_consecutive_failures",
			Help: "Discovery refreshes that failed in a row (0 once one works)."},
			func() float64 { return float64(r.Status().Failures) }))
	l.runs.WithLabelValues("ok")
	l.runs.WithLabelValues("error")
	return l
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// Run refreshes every interval until ctx ends. Each refresh is bounded by
// the interval (at most a minute), so a hung AWS call never stops the next.
func (l *Loop) Run(ctx context.Context) {
	t := time.NewTicker(l.r.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.Once(ctx)
	}
}

// Once refreshes now.
func (l *Loop) Once(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, min(l.r.Interval(), time.Minute))
	ch, err := l.r.Refresh(rctx) // its error is in Status and the Refresher's log
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: not a failure of discovery
		}
		l.failures.Inc()
		l.runs.WithLabelValues("error").Inc()
		l.mu.Lock()
		l.total++
		l.mu.Unlock()
		return
	}
	l.runs.WithLabelValues("ok").Inc()
	if l.changed != nil && !ch.Empty() {
		l.changed(ch)
	}
}

// Detail is discovery's part of /readyz.
type Detail struct {
	// OK is false while the last refresh failed: the fleet is then the
	// last one known (KeptFleet), never emptied.
	OK          bool       `json:"ok"`
	Error       string     `json:"error,omitempty"`
	KeptFleet   bool       `json:"kept_last_known_fleet,omitempty"`
	Failures    int        `json:"consecutive_failures"`
	FailedTotal int        `json:"failed_refreshes_total"`
	Discovered  int        `json:"discovered_targets"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	Interval    string     `json:"interval"`
}

// Detail says how discovery is doing.
func (l *Loop) Detail() Detail {
	st := l.r.Status()
	l.mu.Lock()
	total := l.total
	l.mu.Unlock()
	d := Detail{OK: st.Err == nil, Failures: st.Failures, FailedTotal: total, Discovered: st.Discovered,
		Interval: l.r.Interval().String()}
	if st.Err != nil {
		d.Error, d.KeptFleet = pg.Redact(st.Err.Error()), true
	}
	if !st.LastSuccess.IsZero() {
		d.LastSuccess = &st.LastSuccess
	}
	if !st.LastAttempt.IsZero() {
		d.LastAttempt = &st.LastAttempt
	}
	return d
}
