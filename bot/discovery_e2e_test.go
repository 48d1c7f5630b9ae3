package bot_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg"
	pgaws "github.com/pgkill/pgkill/pg/aws"
	"github.com/pgkill/pgkill/pg/aws/fakeaws"
	"github.com/pgkill/pgkill/pg/pgtest"
)

const region = "eu-west-1"

// discovered is a bot whose fleet comes from discovery against the fake
// AWS: an Aurora cluster "orders" whose instances all point at the test
// PostgreSQL (each is a target of its own, as instance endpoints are).
type discovered struct {
	*env
	aws   *fakeaws.Server
	fleet *pg.Fleet
	base  string // the HTTP listener
}

// startDiscovered seeds the fake AWS with orders-1 (writer) and orders-2,
// refreshes once as main does at start-up, and serves with that Refresher
// on a short interval.
func startDiscovered(t *testing.T) *discovered {
	t.Helper()
	f := fakeaws.New(t)
	dsn := pgtest.DSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	// The test cluster trusts its roles: the secret's password is not
	// checked, its user is the one pgkill logs in as.
	f.PutSecret(region, "pgkill-e2e", `{"username":"`+u.User.Username()+`","password":"unused"}`)
	f.AddCluster(region, fakeaws.Cluster{ID: "orders", Engine: "aurora-postgresql", Writer: "orders-1"})
	d := &discovered{aws: f}
	d.addInstance("orders-1", u.Hostname(), port)
	d.addInstance("orders-2", u.Hostname(), port)

	a := pgaws.New(sdkaws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(fakeaws.AccessKey, fakeaws.SecretKey, ""),
		BaseEndpoint: sdkaws.String(f.URL),
		HTTPClient:   f.Client(),
	})
	disc, err := pgaws.ParseDiscovery("region=" + region + " cluster=orders secret=pgkill-e2e sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	disc.Interval = 50 * time.Millisecond // below what the setting allows: a short test

	e := &env{slack: fakeslack.New(t), logs: &syncBuffer{}, dsn: dsn}
	e.slack.SetGroup("S0DBA", groupie)
	e.slack.Grant(bot.Scopes...)
	e.cfg = config.Config{
		AppToken: fakeslack.AppToken, BotToken: fakeslack.BotToken, APIURL: e.slack.APIURL(),
		Approvers: []string{approver, "S0DBA"}, ApprovalTTL: time.Minute, Command: "/pgkill",
		MinDuration: time.Minute, VerifyTimeout: 5 * time.Second, ConnectTimeout: time.Second,
		Protect: "user=rdsadmin", LogFormat: "json", LogLevel: "debug",
		AlertMaxPerPoll: 5, PollInterval: 100 * time.Millisecond, AlertAfter: time.Minute,
		Reason: "off", Listen: "127.0.0.1:0",
	}
	opts, err := e.cfg.PGOptions()
	if err != nil {
		t.Fatal(err)
	}
	if d.fleet, err = pg.NewFleet(nil, opts); err != nil {
		t.Fatal(err)
	}
	r := pgaws.NewRefresher(a, disc, nil, d.fleet, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err = r.Refresh(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bot.Serve(sctx, e.cfg, d.fleet, nil, e.logs, bot.WithDiscovery(r)) }()
	var once sync.Once
	t.Cleanup(func() {
		if t.Failed() && testing.Verbose() {
			t.Logf("logs:\n%s", e.logs.String())
		}
		once.Do(func() {
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Serve did not return after cancel")
			}
			d.fleet.Close()
		})
		for _, v := range e.slack.Violations() {
			t.Errorf("fake Slack saw: %s", v)
		}
	})
	e.slack.Eventually(t, 15*time.Second, "the bot to connect", func() bool {
		return e.slack.Connected() && len(e.logs.records("connected to Slack")) > 0
	})
	d.env = e
	d.base = e.addr(t)
	return d
}

func (d *discovered) addInstance(id, host string, port int) {
	d.aws.AddInstance(region, fakeaws.Instance{ID: id, Engine: "aurora-postgresql", Cluster: "orders", Address: host, Port: port})
}

// targets runs /pgkill targets and returns its answer.
func (d *discovered) targets(t *testing.T) string {
	t.Helper()
	return string(d.ask(t, requester, channel, "targets").Blocks)
}

// until waits for the fleet to satisfy ok (a refresh is due every 50ms).
func (d *discovered) until(t *testing.T, what string, ok func(specs []pg.TargetSpec) bool) {
	t.Helper()
	d.slack.Eventually(t, 20*time.Second, what, func() bool { return ok(d.fleet.Specs()) })
}

func role(specs []pg.TargetSpec, name string) string {
	for _, s := range specs {
		if s.Name == name {
			return s.Role
		}
	}
	return "(absent)"
}

func (d *discovered) readyz(t *testing.T) (int, map[string]json.RawMessage) {
	t.Helper()
	code, body := get(t, d.base+"/readyz")
	var r map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, r
}

// The bot's side of discovery, end to end: targets with their roles, an
// instance added between refreshes, a failover, a deleted instance with a
// pending request, and a failing refresh that keeps the fleet.
func TestDiscoveredFleet(t *testing.T) {
	t.Parallel()
	d := startDiscovered(t)

	got := d.targets(t)
	for _, want := range []string{
		"• *orders-1* (writer) · discovered: Aurora cluster orders in eu-west-1",
		"• *orders-2* (reader) · discovered: Aurora cluster orders in eu-west-1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/pgkill targets lacks %q: %s", want, got)
		}
	}

	// doctor says where a target came from, how it logs in and that it works.
	d.slack.SlashCommand(t, "/pgkill", requester, channel, "doctor orders-1")
	d.told(t, requester, "*orders-1* (writer) · discovered: Aurora cluster orders in eu-west-1")
	d.told(t, requester, "login: Secrets Manager secret pgkill-e2e :white_check_mark: works")

	// A new instance becomes a target, listable, with its role.
	u, _ := url.Parse(d.dsn)
	port, _ := strconv.Atoi(u.Port())
	d.addInstance("orders-3", u.Hostname(), port)
	d.until(t, "orders-3 to join the fleet", func(s []pg.TargetSpec) bool { return role(s, "orders-3") == "reader" })
	if got := d.targets(t); !strings.Contains(got, "*orders-3* (reader)") {
		t.Errorf("/pgkill targets lacks orders-3: %s", got)
	}
	// The victim waits on an advisory lock the test holds: it runs until
	// the test lets it go, whatever the machine's speed.
	holder := pgtest.NewSession(t, d.dsn, "e2e_disc_holder")
	holder.Exec(t, "SELECT pg_advisory_lock(4711)")
	v := d.victim(t, "e2e_disc_victim", "SELECT pg_advisory_lock(4711)")
	listing := d.list(t, requester, "orders-3 0s app=e2e_disc_victim")
	if !strings.Contains(string(listing.Blocks), "on *orders-3* (reader) / ") {
		t.Fatalf("listing of orders-3 lacks the victim with its role: %s", listing.Blocks)
	}

	// A failover swaps the roles in the next listing.
	d.aws.Failover(region, "orders", "orders-2")
	d.until(t, "the failover", func(s []pg.TargetSpec) bool {
		return role(s, "orders-2") == "writer" && role(s, "orders-1") == "reader"
	})
	after := d.list(t, requester, "orders-1 orders-2 0s app=e2e_disc_victim")
	for _, want := range []string{"on *orders-1* (reader), *orders-2* (writer)", "on *orders-2* (writer) / "} {
		if !strings.Contains(string(after.Blocks), want) {
			t.Errorf("listing after the failover lacks %q: %s", want, after.Blocks)
		}
	}

	// A request pending on an instance that is then deleted ends — closed
	// by the housekeeping sweep, or on approval, whichever comes first —
	// with what happened; nothing is signalled.
	card := d.request(t, requester, listing, v, blocks.ActionCancel)
	d.aws.DeleteInstance(region, "orders-3")
	d.until(t, "orders-3 to leave the fleet", func(s []pg.TargetSpec) bool { return role(s, "orders-3") == "(absent)" })
	d.slack.Click(t, approver, card, blocks.ActionApprove, "")
	d.card(t, listing.TS, "the outcome on the card", has("target orders-3 left the fleet (deleted or no longer discovered): nothing was signalled"))
	if !v.Running() {
		t.Error("the victim ended: something was signalled on a target that left")
	}
	// A new request on the old listing says so too.
	d.slack.Click(t, requester, listing, blocks.ActionTerminate, pidValue(v))
	d.told(t, requester, "target orders-3 left the fleet (deleted or no longer discovered): nothing to request")
	if !v.Running() {
		t.Error("the victim ended")
	}
	// /readyz no longer names it.
	d.slack.Eventually(t, 10*time.Second, "/readyz without orders-3", func() bool {
		_, r := d.readyz(t)
		return !strings.Contains(string(r["targets"]), "orders-3") && strings.Contains(string(r["targets"]), "orders-1")
	})

	// A failing refresh keeps the fleet and says so.
	before := d.fleet.Names()
	d.aws.FailRDS(&fakeaws.APIError{Status: 403, Code: "AccessDenied", Message: "not authorized to perform rds:DescribeDBInstances"})
	var disc struct {
		OK         bool   `json:"ok"`
		Error      string `json:"error"`
		Kept       bool   `json:"kept_last_known_fleet"`
		Failures   int    `json:"consecutive_failures"`
		Discovered int    `json:"discovered_targets"`
	}
	d.slack.Eventually(t, 20*time.Second, "/readyz to show the failing refresh", func() bool {
		_, r := d.readyz(t)
		return json.Unmarshal(r["discovery"], &disc) == nil && disc.Failures >= 2
	})
	if disc.OK || !disc.Kept || !strings.Contains(disc.Error, "AccessDenied") || disc.Discovered != 2 {
		t.Errorf("/readyz discovery = %+v", disc)
	}
	if now := d.fleet.Names(); !slices.Equal(now, before) {
		t.Errorf("fleet %v after failing refreshes, want %v kept", now, before)
	}
	_, metrics := get(t, d.base+"/metrics")
	for _, want := range []string{"pgkill_discovered_targets 2", "pgkill_discovery_last_success_timestamp_seconds 1.", `pgkill_discovery_refreshes_total{result="ok"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if n := metricValue(metrics, "pgkill_discovery_refresh_failures_total"); n < 2 {
		t.Errorf("pgkill_discovery_refresh_failures_total = %v, want at least 2", n)
	}
	if got := d.targets(t); !strings.Contains(got, "*orders-1* (reader)") || !strings.Contains(got, "*orders-2* (writer)") {
		t.Errorf("/pgkill targets during the failures: %s", got)
	}

	// It recovers by itself.
	d.aws.FailRDS(nil)
	d.slack.Eventually(t, 20*time.Second, "/readyz to show discovery working again", func() bool {
		_, r := d.readyz(t)
		return json.Unmarshal(r["discovery"], &disc) == nil && disc.OK && disc.Failures == 0
	})
}

// metricValue is the value of an unlabelled series in a /metrics text.
func metricValue(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
