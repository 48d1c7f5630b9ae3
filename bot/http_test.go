package bot_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/pg"
)

func withListen(c *config.Config, _ *[]pg.TargetSpec) {
	c.Listen = "127.0.0.1:0"
	c.PollInterval = 100 * time.Millisecond
}

// addr is where the bot's HTTP listener is, from its log.
func (e *env) addr(t *testing.T) string {
	t.Helper()
	var addr string
	e.slack.Eventually(t, 10*time.Second, "the HTTP listener", func() bool {
		for _, r := range e.logs.records("serving /healthz, /readyz and /metrics") {
			addr, _ = r["addr"].(string)
		}
		return addr != ""
	})
	return "http://" + addr
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	e := start(t, withListen)
	base := e.addr(t)
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	e.slack.Eventually(t, 10*time.Second, "ready", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	// A full request: the metrics count it.
	v := e.victim(t, "http_victim", "SELECT pg_sleep(60)")
	e.slack.RateLimit("chat.postMessage", 1)
	listing := e.list(t, requester, "0s app=http_victim")
	e.slack.SlashCommand(t, "/pgkill", requester, channel, "bogus")
	card := e.request(t, requester, listing, v, blocks.ActionCancel)
	e.slack.Click(t, approver, card, blocks.ActionApprove, "")
	e.card(t, listing.TS, "the outcome", has("The query ended"))
	v.Result(t)

	var metrics string
	want := []string{
		`pgkill_commands_total{kind="list"} 1`,
		`pgkill_commands_total{kind="invalid"} 1`,
		`pgkill_requests_total{action="cancel"} 1`,
		`pgkill_decisions_total{outcome="approved"} 1`,
		`pgkill_signals_total{action="cancel",result="ended"} 1`,
		`pgkill_verify_duration_seconds_count{action="cancel"} 1`,
		`pgkill_listing_duration_seconds_count{target="main"} 1`,
		`pgkill_target_up{target="main"} 1`,
		`pgkill_slack_api_retries_total{method="chat.postMessage"} 1`,
		`pgkill_socket_connects_total 1`,
		`pgkill_socket_connected 1`,
	}
	e.slack.Eventually(t, 10*time.Second, "the metrics", func() bool {
		_, metrics = get(t, base+"/metrics")
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				return false
			}
		}
		return true
	})
	if strings.Contains(metrics, "pg_sleep") || strings.Contains(metrics, "U0REQ") {
		t.Error("metrics carry queries or users")
	}
}

func TestReadyzNamesWhatIsNotReady(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	e := start(t, withListen, func(_ *config.Config, specs *[]pg.TargetSpec) {
		*specs = append(*specs, pg.TargetSpec{Name: "dead", DSN: "postgres://u@" + dead + "/x?sslmode=disable"})
	})
	base := e.addr(t)
	var body string
	e.slack.Eventually(t, 15*time.Second, "dead checked", func() bool {
		var code int
		code, body = get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && !strings.Contains(body, "not checked yet")
	})
	var r struct {
		Ready    bool
		Slack    string
		NotReady []string `json:"not_ready"`
		Targets  map[string]struct {
			OK    bool
			Error string
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Ready || r.Slack != "connected" || len(r.NotReady) != 1 || r.NotReady[0] != "target dead" || !r.Targets["main"].OK || r.Targets["dead"].OK {
		t.Errorf("readyz = %s", body)
	}
	_, metrics := get(t, base+"/metrics")
	if !strings.Contains(metrics, `pgkill_target_up{target="dead"} 0`) {
		t.Error("target_up for the dead target is not 0")
	}
}

// Every Slack call has a deadline: with chat.postMessage hung, the listing's
// post gives up in time and the listing still arrives, through the
// command's response_url.
func TestListingWhenPostHangs(t *testing.T) {
	e := start(t)
	release := e.slack.Stall("chat.postMessage")
	defer release()
	m := e.list(t, requester, "main 0s app=nobody_runs_this")
	if m.Via != "response_url" {
		t.Errorf("listing came through %s", m.Via)
	}
	if e.slack.Stalled("chat.postMessage") == 0 {
		t.Error("the post was not stalled")
	}
}
