package bot

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are what operators watch, in Prometheus form. Every name starts
// with pgkill_; labels never carry queries, users or anything secret.
type metrics struct {
	reg         *prometheus.Registry
	commands    *prometheus.CounterVec
	requests    *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	signals     *prometheus.CounterVec
	verify      *prometheus.HistogramVec
	listing     *prometheus.HistogramVec
	poll        *prometheus.HistogramVec
	targetUp    *prometheus.GaugeVec
	slackErrors *prometheus.CounterVec
	slackRetry  *prometheus.CounterVec
	connects    prometheus.Counter
	connected   prometheus.Gauge
	alerts      *prometheus.CounterVec
	leases      *prometheus.GaugeVec
	panics      *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_commands_total",
			Help: "Slash commands received, by kind (list, help, targets, doctor, invalid)."}, []string{"kind"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_requests_total",
			Help: "Approval requests made, by action."}, []string{"action"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_decisions_total",
			Help: "Approval requests decided, by outcome (approved, denied, withdrawn, expired)."}, []string{"outcome"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_signals_total",
			Help: "Approved signals, by action and result (ended, still-running, gone, server-changed, denied, error)."}, []string{"action", "result"}),
		verify: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pgkill_verify_duration_seconds",
			Help: "Time from signal to the backend seen gone (or the verify timeout), by action.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}, []string{"action"}),
		listing: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pgkill_listing_duration_seconds",
			Help: "Time to list one target for a /pgkill command.", Buckets: prometheus.DefBuckets}, []string{"target"}),
		poll: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pgkill_poll_duration_seconds",
			Help: "Time of one alert poll of one target.", Buckets: prometheus.DefBuckets}, []string{"target"}),
		targetUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgkill_target_up",
			Help: "1 when the target answered its last listing or poll, 0 when it did not."}, []string{"target"}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_slack_api_errors_total",
			Help: "Slack Web API calls that failed, by method."}, []string{"method"}),
		slackRetry: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_slack_api_retries_total",
			Help: "Slack Web API calls retried after HTTP 429, by method."}, []string{"method"}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgkill_socket_connects_total",
			Help: "Socket Mode connections opened (the first one and every reconnect)."}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgkill_socket_connected",
			Help: "1 while the Socket Mode connection is up."}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_panics_recovered_total",
			Help: "Failures (Go panics) in the handling of one Slack envelope, recovered so the process goes on, by envelope kind."}, []string{"envelope"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_alerts_total",
			Help: "Alert messages, by kind (posted, summary, resolved, target-down, target-up)."}, []string{"kind"}),
		leases: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgkill_target_lease_held",
			Help: "1 while this replica polls the target for alerts (holds its lease, with a state store), 0 after it stopped."}, []string{"target"}),
	}
	m.reg.MustRegister(m.commands, m.requests, m.decisions, m.signals, m.verify, m.listing, m.poll, m.targetUp,
		m.slackErrors, m.slackRetry, m.connects, m.connected, m.alerts, m.leases, m.panics,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, kind := range []string{"slash_commands", "interactive", "view_submission"} { // shown at 0 from the start
		m.panics.WithLabelValues(kind)
	}
	return m
}

func (m *metrics) slackRetryOn(method string)   { m.slackRetry.WithLabelValues(method).Inc() }
func (m *metrics) slackErrorOn(method string)   { m.slackErrors.WithLabelValues(method).Inc() }
func (m *metrics) command(kind string)          { m.commands.WithLabelValues(kind).Inc() }
func (m *metrics) request(action string)        { m.requests.WithLabelValues(action).Inc() }
func (m *metrics) decision(outcome string)      { m.decisions.WithLabelValues(outcome).Inc() }
func (m *metrics) alert(kind string)            { m.alerts.WithLabelValues(kind).Inc() }
func (m *metrics) socketUp()                    { m.connects.Inc(); m.connected.Set(1) }
func (m *metrics) socketDown()                  { m.connected.Set(0) }
func (m *metrics) signal(action, result string) { m.signals.WithLabelValues(action, result).Inc() }

func (m *metrics) verified(action string, d time.Duration) {
	m.verify.WithLabelValues(action).Observe(d.Seconds())
}

func (m *metrics) listed(target string, d time.Duration, ok bool) {
	m.listing.WithLabelValues(target).Observe(d.Seconds())
	m.up(target, ok)
}

func (m *metrics) polled(target string, d time.Duration, ok bool) {
	m.poll.WithLabelValues(target).Observe(d.Seconds())
	m.up(target, ok)
}

func (m *metrics) up(target string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.targetUp.WithLabelValues(target).Set(v)
}

// forget drops the per-target series of targets that left the fleet.
func (m *metrics) forget(targets []string) {
	for _, t := range targets {
		m.targetUp.DeleteLabelValues(t)
		m.listing.DeleteLabelValues(t)
		m.poll.DeleteLabelValues(t)
		m.leases.DeleteLabelValues(t)
	}
}

func (m *metrics) leaseHeld(target string, held bool) {
	v := 0.0
	if held {
		v = 1
	}
	m.leases.WithLabelValues(target).Set(v)
}

// replica exports the replica's name and whether its state store answers.
func (m *metrics) replica(name string, storeUp func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_replica_info",
		Help: "Always 1; the replica label names this replica (PGKILL_REPLICA).", ConstLabels: prometheus.Labels{"replica": name}},
		func() float64 { return 1 }))
	if storeUp != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_state_store_up",
			Help: "1 when the last lease round reached the state store, 0 when it failed."}, storeUp))
	}
}

func (m *metrics) panicked(kind string) { m.panics.WithLabelValues(kind).Inc() }

// commandKind classifies a command for the metric without its arguments.
func commandKind(q Query, err error) string {
	if err != nil {
		return "invalid"
	}
	return strings.ToLower(q.Kind)
}

// outboxPending exports how many alert messages wait to be sent.
func (m *metrics) outboxPending(pending func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_alert_outbox_pending",
		Help: "Alert messages waiting for Slack (paced at one a second, retried with backoff)."},
		func() float64 { return float64(pending()) }))
}
