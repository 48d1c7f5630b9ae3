package discovery_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgkill/pgkill/bot/discovery"
	"github.com/pgkill/pgkill/pg"
	pgaws "github.com/pgkill/pgkill/pg/aws"
	"github.com/pgkill/pgkill/pg/aws/fakeaws"
)

// refresher answers each Refresh with the next of its results and keeps a
// Status as the real one does.
type refresher struct {
	mu      sync.Mutex
	results []result
	status  pgaws.Status
	calls   int
}

type result struct {
	ch  pg.FleetChange
	err error
}

var at = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

func (r *refresher) Refresh(context.Context) (pg.FleetChange, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.results[min(r.calls, len(r.results)-1)]
	r.calls++
	r.status.LastAttempt = at.Add(time.Duration(r.calls) * time.Minute)
	if res.err != nil {
		r.status.Err, r.status.Failures = res.err, r.status.Failures+1
		return pg.FleetChange{}, res.err
	}
	r.status = pgaws.Status{LastAttempt: r.status.LastAttempt, LastSuccess: r.status.LastAttempt, Discovered: 2, Change: res.ch}
	return res.ch, nil
}

func (r *refresher) Status() pgaws.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *refresher) Interval() time.Duration { return 10 * time.Millisecond }

func TestLoop(t *testing.T) {
	denied := errors.New("discover RDS instances in eu-west-1: DescribeDBInstances: AccessDenied")
	r := &refresher{results: []result{
		{ch: pg.FleetChange{Added: []string{"orders-3"}}},
		{ch: pg.FleetChange{}},
		{err: denied},
		{err: denied},
		{ch: pg.FleetChange{Removed: []string{"orders-3"}}},
	}}
	reg := prometheus.NewRegistry()
	var changes []pg.FleetChange
	l := discovery.New(r, reg, func(ch pg.FleetChange) { changes = append(changes, ch) })
	ctx := context.Background()

	steps := []struct {
		ok       bool
		failures int
		total    int
	}{{true, 0, 0}, {true, 0, 0}, {false, 1, 1}, {false, 2, 2}, {true, 0, 2}}
	for i, want := range steps {
		l.Once(ctx)
		d := l.Detail()
		if d.OK != want.ok || d.Failures != want.failures || d.FailedTotal != want.total || d.KeptFleet == want.ok {
			t.Errorf("after refresh %d: detail %+v, want ok=%v failures=%d total=%d", i+1, d, want.ok, want.failures, want.total)
		}
		if !want.ok && !strings.Contains(d.Error, "AccessDenied") {
			t.Errorf("after refresh %d: error %q", i+1, d.Error)
		}
		if d.LastSuccess == nil {
			t.Errorf("after refresh %d: no last success", i+1)
		}
	}
	// Only the refreshes that changed the fleet are told.
	if len(changes) != 2 || changes[0].Added[0] != "orders-3" || changes[1].Removed[0] != "orders-3" {
		t.Errorf("changes told: %+v", changes)
	}
	for series, want := range map[string]float64{
		"pgkill_discovery_refresh_failures_total":          2,
		"pgkill_discovered_targets":                        2,
		"pgkill_discovery_consecutive_failures":            0,
		`pgkill_discovery_refreshes_total{result="error"}`: 2,
		`pgkill_discovery_refreshes_total{result="ok"}`:    3,
		"pgkill_discovery_last_success_timestamp_seconds":  float64(at.Add(5 * time.Minute).Unix()),
	} {
		if got := value(t, reg, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// value reads one series from reg: name, or name{label="value"}.
func value(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	name, label, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" {
				k, v, _ := strings.Cut(label, "=")
				if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != k || `"`+m.GetLabel()[0].GetValue()+`"` != v {
					continue
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// A refresh cut short by shutdown is not a failure of discovery.
func TestLoopShutdown(t *testing.T) {
	r := &refresher{results: []result{{err: context.Canceled}}}
	reg := prometheus.NewRegistry()
	l := discovery.New(r, reg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.Once(ctx)
	if got := value(t, reg, "pgkill_discovery_refresh_failures_total"); got != 0 {
		t.Errorf("failures = %v after a refresh cancelled by shutdown", got)
	}
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// Run refreshes a real Refresher (against the in-repo AWS) by itself until
// its context ends: an instance that appears joins the fleet.
func TestLoopRunsRefresher(t *testing.T) {
	f := fakeaws.New(t)
	f.AddInstance("eu-west-1", fakeaws.Instance{ID: "ledger", Engine: "postgres", Address: "ledger.x", Port: 5432})
	a := pgaws.New(sdkaws.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider(fakeaws.AccessKey, fakeaws.SecretKey, ""),
		BaseEndpoint: sdkaws.String(f.URL),
		HTTPClient:   f.Client(),
	})
	d, err := pgaws.ParseDiscovery("auth=iam user=pgkill")
	if err != nil {
		t.Fatal(err)
	}
	d.Interval = 10 * time.Millisecond // below what the setting allows, to keep the test short
	fleet, err := pg.NewFleet(nil, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	r := pgaws.NewRefresher(a, d, nil, fleet, nil)
	var mu sync.Mutex
	var told []pg.FleetChange
	l := discovery.New(r, prometheus.NewRegistry(), func(ch pg.FleetChange) { mu.Lock(); told = append(told, ch); mu.Unlock() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()

	deadline := time.Now().Add(15 * time.Second)
	for !slices.Contains(fleet.Names(), "ledger") {
		if time.Now().After(deadline) {
			t.Fatalf("ledger never joined the fleet: %v (status %+v)", fleet.Names(), r.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.AddInstance("eu-west-1", fakeaws.Instance{ID: "ledger-2", Engine: "postgres", Address: "ledger-2.x", Port: 5432})
	for !slices.Contains(fleet.Names(), "ledger-2") {
		if time.Now().After(deadline) {
			t.Fatalf("ledger-2 never joined the fleet: %v (status %+v)", fleet.Names(), r.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(told) == 0 || !slices.Contains(told[len(told)-1].Added, "ledger-2") {
		t.Errorf("changes told: %+v", told)
	}
}
