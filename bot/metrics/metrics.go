// Package metrics is what operators watch of pgkill, in Prometheus form:
// every name starts with pgkill_; labels never carry queries, users or
// anything secret.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are pgkill's series. Its methods are safe for concurrent use.
type Metrics struct {
	Reg         *prometheus.Registry
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
	autopilot   *prometheus.CounterVec
}

// New registers every series in a new registry.
func New() *Metrics {
	m := &Metrics{
		Reg: prometheus.NewRegistry(),
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
		autopilot: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_autopilot_total",
			Help: "Autopilot rules firing, by rule and what they did (dry-run: posted what they would do; act: counting down to a signal; breaker: tripped)."}, []string{"rule", "kind"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_panics_recovered_total",
			Help: "Failures (Go panics) in the handling of one Slack envelope, recovered so the process goes on, by envelope kind."}, []string{"envelope"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgkill_alerts_total",
			Help: "Alert messages, by kind (posted, summary, resolved, target-down, target-up)."}, []string{"kind"}),
		leases: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgkill_target_lease_held",
			Help: "1 while this replica polls the target for alerts (holds its lease, with a state store), 0 after it stopped."}, []string{"target"}),
	}
	m.Reg.MustRegister(m.commands, m.requests, m.decisions, m.signals, m.verify, m.listing, m.poll, m.targetUp,
		m.slackErrors, m.slackRetry, m.connects, m.connected, m.alerts, m.leases, m.panics, m.autopilot,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, kind := range []string{"slash_commands", "interactive", "view_submission"} { // shown at 0 from the start
		m.panics.WithLabelValues(kind)
	}
	return m
}

func (m *Metrics) SlackRetry(method string)     { m.slackRetry.WithLabelValues(method).Inc() }
func (m *Metrics) SlackError(method string)     { m.slackErrors.WithLabelValues(method).Inc() }
func (m *Metrics) Command(kind string)          { m.commands.WithLabelValues(kind).Inc() }
func (m *Metrics) Request(action string)        { m.requests.WithLabelValues(action).Inc() }
func (m *Metrics) Decision(outcome string)      { m.decisions.WithLabelValues(outcome).Inc() }
func (m *Metrics) Alert(kind string)            { m.alerts.WithLabelValues(kind).Inc() }
func (m *Metrics) SocketUp()                    { m.connects.Inc(); m.connected.Set(1) }
func (m *Metrics) SocketDown()                  { m.connected.Set(0) }
func (m *Metrics) Signal(action, result string) { m.signals.WithLabelValues(action, result).Inc() }

func (m *Metrics) Verified(action string, d time.Duration) {
	m.verify.WithLabelValues(action).Observe(d.Seconds())
}

func (m *Metrics) Listed(target string, d time.Duration, ok bool) {
	m.listing.WithLabelValues(target).Observe(d.Seconds())
	m.Up(target, ok)
}

func (m *Metrics) Polled(target string, d time.Duration, ok bool) {
	m.poll.WithLabelValues(target).Observe(d.Seconds())
	m.Up(target, ok)
}

// Up records whether target answered its last check.
func (m *Metrics) Up(target string, ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.targetUp.WithLabelValues(target).Set(v)
}

// forget drops the per-target series of targets that left the fleet.
func (m *Metrics) Forget(targets []string) {
	for _, t := range targets {
		m.targetUp.DeleteLabelValues(t)
		m.listing.DeleteLabelValues(t)
		m.poll.DeleteLabelValues(t)
		m.leases.DeleteLabelValues(t)
	}
}

func (m *Metrics) LeaseHeld(target string, held bool) {
	v := 0.0
	if held {
		v = 1
	}
	m.leases.WithLabelValues(target).Set(v)
}

// replica exports the replica's name and whether its state store answers.
func (m *Metrics) Replica(name string, storeUp func() float64) {
	m.Reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_replica_info",
		Help: "Always 1; the replica label names this replica (PGKILL_REPLICA).", ConstLabels: prometheus.Labels{"replica": name}},
		func() float64 { return 1 }))
	if storeUp != nil {
		m.Reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_state_store_up",
			Help: "1 when the last lease round reached the state store, 0 when it failed."}, storeUp))
	}
}

func (m *Metrics) Panicked(kind string) { m.panics.WithLabelValues(kind).Inc() }

// Autopilot counts a rule firing: kind is its mode, or "breaker".
func (m *Metrics) Autopilot(rule, kind string) { m.autopilot.WithLabelValues(rule, kind).Inc() }

// OutboxPending exports how many Slack writes wait to be sent.
func (m *Metrics) OutboxPending(pending func() int) {
	m.Reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pgkill_outbox_pending",
		Help: "Messages, edits and answers waiting for Slack (paced per channel, retried with backoff)."},
		func() float64 { return float64(pending()) }))
}
