package main

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// Replicas that disagree, with the built binary: several on one host with
// default settings, fleets that differ, and a state store that is slow or
// cut off for one of them.

// liveReplicas returns the names of the replicas alive in the state store.
func (h *haEnv) liveReplicas(t *testing.T) []string {
	t.Helper()
	var names []string
	h.queryState(t, `SELECT coalesce(array_agg(name ORDER BY name), '{}') FROM pgkill_replica WHERE expires > clock_timestamp()`, nil,
		func(r pgx.Row) error { return r.Scan(&names) })
	return names
}

// Several `pgkill serve` on one host with default settings (no
// PGKILL_REPLICA) are several replicas: each has a name of its own, and each
// target is polled by one of them at a time.
func TestHAReplicasOnOneHostDefaults(t *testing.T) {
	h := newHA(t, "ha_host")
	var rs []*haReplica
	for i := range 3 {
		rs = append(rs, h.startWith(t, fmt.Sprintf("default-%d", i)))
	}
	var names []string
	h.fake.Eventually(t, 30*time.Second, "three live replicas of distinct names", func() bool {
		names = h.liveReplicas(t)
		return len(names) == 3
	})
	host, _ := os.Hostname()
	for _, n := range names {
		if !strings.HasPrefix(n, host+"-") {
			t.Errorf("default name %q is not the hostname %q with a suffix", n, host)
		}
	}
	h.fake.Eventually(t, 30*time.Second, "each target polled by exactly one replica", func() bool {
		for _, target := range []string{"t1", "t2"} {
			n := 0
			for _, r := range rs {
				if strings.Contains(get(t, "http://"+r.listen+"/metrics"), `pgkill_target_lease_held{target="`+target+`"} 1`) {
					n++
				}
			}
			if n != 1 {
				return false
			}
		}
		return true
	})
	q := h.runaway(t, "t1")
	h.alerted(t, "t1", q.PID)
	end(t, q)
	h.resolved(t, "t1", q.PID)
	h.checkOnce(t, "t1", q.PID)
}

// Two live processes claiming one name: the second refuses to start and
// says which name and why.
func TestHAReplicaNameInUse(t *testing.T) {
	h := newHA(t, "ha_twin")
	h.start(t, "twin")
	second := h.launch(t, "twin-again", "PGKILL_REPLICA=twin")
	select {
	case err := <-second.exited:
		second.exited <- err
		if err == nil {
			t.Fatal("the second process with the same name exited 0")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the second process with the same name did not refuse to start")
	}
	second.logs.mu.Lock()
	out := second.logs.buf.String()
	second.logs.mu.Unlock()
	for _, want := range []string{"PGKILL_REPLICA", `"twin"`, "in use by another live pgkill process"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, out)
		}
	}
}

// Replicas whose fleets differ (one knows t1 and t2, the other t1 to t4):
// every target any replica knows is polled (a runaway query on each is
// alerted once); a request on a target one replica does not know is not
// closed by that replica's sweep, and is carried out by the one that
// knows it.
func TestHAFleetsThatDiffer(t *testing.T) {
	h := newHA(t, "ha_fleets", "PGKILL_APPROVAL_TTL=20s") // a sweep every second
	h.dsn["t3"], h.dsn["t4"] = pgtest.Role(t, "ha_t3"), pgtest.Role(t, "ha_t4")
	all := "PGKILL_TARGETS=t1=" + h.dsn["t1"] + ",t2=" + h.dsn["t2"] + ",t3=" + h.dsn["t3"] + ",t4=" + h.dsn["t4"]
	h.startWith(t, "big", "PGKILL_REPLICA=big", all)
	// A request on t3, made while only the big replica answers.
	q3 := h.runaway(t, "t3")
	listing := h.list(t)
	card := h.request(t, listing, q3)
	small := h.startWith(t, "small", "PGKILL_REPLICA=small", "PGKILL_LOG_LEVEL=debug")
	qs := map[string]*pgtest.Session{"t3": q3}
	for _, target := range []string{"t1", "t2", "t4"} {
		qs[target] = h.runaway(t, target)
	}
	for target, q := range qs {
		h.alerted(t, target, q.PID)
	}
	// The small replica does not know t3: its sweeps leave the request alone.
	h.waitSweeps(t, small, 3)
	if m, _ := h.fake.Message(card.Channel, card.TS); !strings.Contains(string(m.Blocks), blocks.ActionApprove) {
		t.Fatalf("the request on t3 was closed by a replica that does not know t3: %s", m.Blocks)
	}
	// Approve until a replica that knows t3 gets the click.
	deadline := time.Now().Add(30 * time.Second)
	for q3.Running() && time.Now().Before(deadline) {
		h.reliably(t, func() string { return h.fake.Click(t, "U0APPROVER", card, blocks.ActionApprove, "") })
		time.Sleep(200 * time.Millisecond)
	}
	if got := pgtest.SQLState(q3.Result(t)); got != "57014" {
		t.Errorf("q3 SQLSTATE %q, want 57014 (cancelled)", got)
	}
	for target, q := range qs {
		if target != "t3" {
			end(t, q)
		}
		h.resolved(t, target, q.PID)
		h.checkOnce(t, target, q.PID)
	}
}

// waitSweeps waits until r has run n more housekeeping sweeps, counted by
// its debug log.
func (h *haEnv) waitSweeps(t *testing.T, r *haReplica, n int) {
	t.Helper()
	from := len(r.logs.records("swept", ""))
	h.fake.Eventually(t, 60*time.Second, fmt.Sprintf("%d sweeps of %s", n, r.name), func() bool {
		return len(r.logs.records("swept", "")) >= from+n
	})
}

// polls are the times each target was polled, over every replica's log.
func (h *haEnv) polls() map[string][]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]time.Time{}
	for _, r := range h.all {
		for _, rec := range r.logs.records("polled", "") {
			target, _ := rec["target"].(string)
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(rec["time"]))
			if err == nil {
				out[target] = append(out[target], at)
			}
		}
	}
	for _, ts := range out {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	}
	return out
}

// longestGap is the longest a target went unpolled between from and to.
func longestGap(ts []time.Time, from, to time.Time) time.Duration {
	var gap time.Duration
	last := from
	for _, at := range ts {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}

// A state store slow for one replica (every byte delayed past its lease),
// then cut off from it: that replica's targets are taken over and polled
// by the others, no alert is posted twice, and no known target goes
// unpolled for long. Leases of one second: with 300 ms ones a loaded
// machine (2 shared cores, -race) left a poll too little of its lease for
// its claim in the store, and an alert went unposted for 30 s (the poll
// then must not post: it could no longer know the target was its own).
func TestHAStoreFaults(t *testing.T) {
	h := newHA(t, "ha_faults", "PGKILL_LOG_LEVEL=debug", "PGKILL_POLL_INTERVAL=1s")
	proxies := map[string]*pgtest.Proxy{}
	u, err := url.Parse(h.stateDSN)
	if err != nil {
		t.Fatal(err)
	}
	rs := map[string]*haReplica{}
	for _, n := range []string{"r1", "r2", "r3"} {
		proxies[n] = pgtest.NewProxy(t, u.Host)
		rs[n] = h.startWith(t, n, "PGKILL_REPLICA="+n, "PGKILL_STATE_DSN="+proxies[n].Via(t, h.stateDSN))
	}
	var qs []*pgtest.Session
	var targets []string
	alertAll := func() {
		for _, target := range []string{"t1", "t2"} {
			q := h.runaway(t, target)
			h.alerted(t, target, q.PID)
			qs, targets = append(qs, q), append(targets, target)
		}
	}
	alertAll()
	for _, fault := range []struct {
		name  string
		start func(p *pgtest.Proxy)
		stop  func(p *pgtest.Proxy)
	}{
		{"latency 1s on every packet", func(p *pgtest.Proxy) { p.SetDelay(time.Second) }, func(p *pgtest.Proxy) { p.SetDelay(0) }},
		{"partition", func(p *pgtest.Proxy) { p.Partition(true) }, func(p *pgtest.Proxy) { p.Partition(false) }},
	} {
		victim := h.holder(t, "t1")
		if victim == "" {
			t.Fatal("nobody holds t1")
		}
		began := time.Now()
		fault.start(proxies[victim])
		h.fake.Eventually(t, 30*time.Second, "t1 taken over from "+victim, func() bool {
			who := h.holder(t, "t1")
			return who != "" && who != victim
		})
		alertAll() // new queries on every target during the fault: each alerted once
		fault.stop(proxies[victim])
		ended := time.Now()
		for _, target := range []string{"t1", "t2"} {
			t.Logf("%s on %s: the longest %s went unpolled was %v (poll interval %v)", fault.name, victim, target,
				longestGap(h.polls()[target], began, ended).Round(time.Millisecond), time.Second)
		}
	}
	// A query that turns runaway just as its replica is cut off: that
	// replica's last polls, while its lease is still good, cannot claim the
	// alert; the replica taking the target over posts it, once.
	victim := h.holder(t, "t1")
	q := pgtest.NewSession(t, h.dsn["t1"], "ha_runaway")
	q.Run("SELECT pg_sleep(600)")
	waitState(t, q.PID, "active")
	h.fake.Eventually(t, 30*time.Second, "the query to near the alert threshold", func() bool {
		return pgtest.Int(t, "SELECT (extract(epoch FROM clock_timestamp() - query_start) * 1000)::int FROM pg_stat_activity WHERE pid = $1", q.PID) >= 900
	})
	proxies[victim].Partition(true)
	h.alerted(t, "t1", q.PID)
	proxies[victim].Partition(false)
	qs, targets = append(qs, q), append(targets, "t1")
	for i, q := range qs {
		end(t, q)
		h.resolved(t, targets[i], q.PID)
		h.checkOnce(t, targets[i], q.PID)
	}
}

// A target still down when its replica dies is not reported down again by
// the replica taking it over (the outage is kept in the state store), and
// is reported up once when it answers again.
func TestHATargetDownAcrossTakeover(t *testing.T) {
	h := newHA(t, "ha_down", "PGKILL_POLL_INTERVAL=1s") // leases that ride out a loaded machine
	u, err := url.Parse(h.dsn["t2"])
	if err != nil {
		t.Fatal(err)
	}
	px := pgtest.NewProxy(t, u.Host)
	h.env = append(h.env, "PGKILL_TARGETS=t1="+h.dsn["t1"]+",t2="+px.Via(t, h.dsn["t2"]))
	rs := map[string]*haReplica{}
	for _, n := range []string{"r1", "r2"} {
		rs[n] = h.start(t, n)
	}
	notices := func(what string) int {
		return len(h.fake.Messages(func(m fakeslack.Message) bool {
			return m.Channel == haAlerts && strings.Contains(m.Text, "t2") && strings.Contains(m.Text, what)
		}))
	}
	px.Partition(true)
	h.fake.Eventually(t, 60*time.Second, "t2 reported down", func() bool { return notices("cannot be polled") == 1 })
	var dead *haReplica
	h.fake.Eventually(t, 30*time.Second, "t2's holder", func() bool { dead = rs[h.holder(t, "t2")]; return dead != nil })
	h.kill(t, dead)
	h.fake.Eventually(t, 30*time.Second, "another replica to take t2 over", func() bool {
		who := h.holder(t, "t2")
		return who != "" && who != dead.name
	})
	h.waitPollsOf(t, "t2", 3*time.Second) // the new holder polls t2, down, several times
	px.Partition(false)
	h.fake.Eventually(t, 60*time.Second, "t2 reported up", func() bool { return notices("answers again") == 1 })
	if n := notices("cannot be polled"); n != 1 {
		t.Errorf("t2 reported down %d times, want once", n)
	}
}

// waitPollsOf lets target be polled for d: a failing poll is logged only
// once per outage, so the polls are counted by time here.
func (h *haEnv) waitPollsOf(t *testing.T, target string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	h.fake.Eventually(t, d+30*time.Second, "polls of "+target, func() bool { return time.Now().After(deadline) })
}

// A flood summary posted by a replica that then dies is resolved in place
// by the replica that takes its target over.
func TestHASummaryAcrossTakeover(t *testing.T) {
	h := newHA(t, "ha_summary", "PGKILL_ALERT_MAX_PER_POLL=1", "PGKILL_POLL_INTERVAL=1s", "PGKILL_LOG_LEVEL=debug")
	rs := map[string]*haReplica{}
	for _, n := range []string{"r1", "r2"} {
		rs[n] = h.start(t, n)
	}
	summaries := func() []fakeslack.Message {
		return h.fake.Messages(func(m fakeslack.Message) bool {
			return m.Channel == haAlerts && strings.Contains(m.Text, "runaway queries")
		})
	}
	// Two queries started together make a flood only when one poll finds
	// both past the threshold; a poll between their crossings alerts them
	// one by one. Then they are ended, and two more started.
	var qa, qb *pgtest.Session
	for attempt := 1; ; attempt++ {
		qa, qb = pgtest.NewSession(t, h.dsn["t1"], "ha_runaway"), pgtest.NewSession(t, h.dsn["t1"], "ha_runaway")
		qa.Run("SELECT pg_sleep(600)")
		qb.Run("SELECT pg_sleep(600)")
		waitState(t, qa.PID, "active")
		waitState(t, qb.PID, "active")
		var alone bool
		h.fake.Eventually(t, 30*time.Second, "the flood summary, or each query alerted alone", func() bool {
			alone = len(h.alerts("t1", qa.PID)) > 0 && len(h.alerts("t1", qb.PID)) > 0
			return len(summaries()) == 1 || alone
		})
		if len(summaries()) == 1 {
			break
		}
		if attempt == 5 {
			t.Fatal("five pairs of queries started together were each alerted alone: no flood")
		}
		t.Logf("attempt %d: a poll came between the two queries' crossings; again", attempt)
		end(t, qa)
		end(t, qb)
		h.resolved(t, "t1", qa.PID)
		h.resolved(t, "t1", qb.PID)
	}
	var dead *haReplica
	h.fake.Eventually(t, 60*time.Second, "t1's holder to record the summary", func() bool {
		dead = rs[h.holder(t, "t1")]
		var n int
		h.queryState(t, `SELECT count(*) FROM pgkill_alert WHERE target = 't1' AND doc->>'SummaryTS' <> ''`, nil, func(r pgx.Row) error { return r.Scan(&n) })
		return dead != nil && n == 2
	})
	h.kill(t, dead)
	h.fake.Eventually(t, 30*time.Second, "another replica to take t1 over", func() bool {
		who := h.holder(t, "t1")
		return who != "" && who != dead.name
	})
	end(t, qa)
	end(t, qb)
	h.fake.Eventually(t, 60*time.Second, "the summary resolved in place", func() bool {
		ms := summaries()
		return len(ms) == 1 && strings.Contains(string(ms[0].Blocks), "esolved")
	})
}

// BenchmarkHATargetLoad measures what several replicas on one host with
// default settings cost a target: its polls per second (each one listing
// statement), over every replica's debug log, with 1 and 3 replicas at a
// 1 s poll interval.
func BenchmarkHATargetLoad(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			for b.Loop() {
				b.ReportMetric(haTargetLoad(b, n), "target-polls/s")
			}
		})
	}
}

func haTargetLoad(b *testing.B, replicas int) float64 {
	b.Helper()
	dbDSN := pgtest.Database(b, "ha_load_targets")
	h := &haEnv{fake: fakeslack.New(b), stateDSN: pgtest.Database(b, "ha_load_state"), dsn: map[string]string{"t1": dbDSN}}
	h.env = []string{
		"PATH=" + os.Getenv("PATH"), "PGKILL_TARGETS=t1=" + dbDSN,
		"SLACK_APP_TOKEN=" + fakeslack.AppToken, "SLACK_BOT_TOKEN=" + fakeslack.BotToken, "SLACK_API_URL=" + h.fake.APIURL(),
		"PGKILL_APPROVERS=U0APPROVER", "PGKILL_LOG_FORMAT=json", "PGKILL_STATE_DSN=" + h.stateDSN,
		"PGKILL_ALERT_CHANNEL=" + haAlerts, "PGKILL_POLL_INTERVAL=1s", "PGKILL_LOG_LEVEL=debug",
	}
	h.fake.AllowConnections(10)
	for i := range replicas {
		r := &haReplica{name: fmt.Sprint(i), logs: &logBuffer{}, exited: make(chan error, 1)}
		r.cmd = exec.Command(binary, "serve")
		r.cmd.Env = h.env
		r.cmd.Stderr = r.logs
		if err := r.cmd.Start(); err != nil {
			b.Fatal(err)
		}
		go func() { r.exited <- r.cmd.Wait() }()
		h.all = append(h.all, r)
	}
	defer func() {
		for _, r := range h.all {
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	}()
	time.Sleep(5 * time.Second) // connected, leases settled
	from := time.Now()
	time.Sleep(20 * time.Second)
	to := time.Now()
	n := 0
	for _, at := range h.polls()["t1"] {
		if at.After(from) && at.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}
