package demo_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/bot/fakeslack"
)

// TestLocalSurface attacks a running demo as a web page on another site
// (or a DNS name rebound to 127.0.0.1) would: posting a message with a
// forged Approve button into the incident channel, or taking over the
// bot's socket to read its slash commands. Each attempt is refused, nothing
// is posted, the bot keeps its one connection, and the page refuses to be
// framed.
func TestLocalSurface(t *testing.T) {
	d := startDemo(t)
	api := d.Slack.APIURL()
	bot, app := runTokens(d)
	host := strings.TrimSuffix(strings.TrimPrefix(api, "http://"), "/api/")
	forged := url.Values{"channel": {demo.ChannelIncident}, "text": {"forged"},
		"blocks": {`[{"type":"actions","elements":[{"type":"button","action_id":"pgkill_approve","value":"1","text":{"type":"plain_text","text":"Approve"}}]}]`}}

	type call struct {
		name, method, token, host, origin string
		form                              url.Values
	}
	for _, tc := range []call{
		{name: "cross_origin_post", method: "chat.postMessage", token: bot, origin: "http://evil.example", form: forged},
		{name: "null_origin_post", method: "chat.postMessage", token: bot, origin: "null", form: forged},
		{name: "rebound_host", method: "chat.postMessage", token: bot, host: "evil.example:" + port(host), form: forged},
		{name: "well_known_token", method: "chat.postMessage", token: fakeslack.BotToken, form: forged},
		{name: "no_token", method: "chat.postMessage", form: forged},
		{name: "app_token_for_web_api", method: "chat.postMessage", token: app, form: forged},
		{name: "open_with_well_known_token", method: "apps.connections.open", token: fakeslack.AppToken},
		{name: "open_with_bot_token", method: "apps.connections.open", token: bot},
		{name: "open_cross_origin", method: "apps.connections.open", token: app, origin: "http://evil.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			for k, v := range tc.form {
				form[k] = v
			}
			if tc.token != "" {
				form.Set("token", tc.token)
			}
			req, err := http.NewRequest(http.MethodPost, api+tc.method, strings.NewReader(form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var ans struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
			}
			_ = json.Unmarshal(body, &ans)
			if resp.StatusCode == http.StatusOK && ans.OK {
				t.Errorf("accepted: %s", body)
			}
		})
	}

	t.Run("websocket_foreign_origin", func(t *testing.T) {
		link := openLink(t, api, app)
		conn, resp, err := websocket.DefaultDialer.Dial(link, http.Header{"Origin": {"http://evil.example"}})
		if err == nil {
			conn.Close()
			t.Fatal("a page on another site opened the Socket Mode connection")
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("refused with %v, want 403", err)
		}
	})
	t.Run("websocket_without_ticket", func(t *testing.T) {
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+host+"/link/?ticket=1&app_id=A111", nil)
		if err == nil {
			conn.Close()
			t.Fatal("a guessed ticket opened the Socket Mode connection")
		}
	})
	t.Run("websocket_rebound_host", func(t *testing.T) {
		link := openLink(t, api, app)
		conn, _, err := websocket.DefaultDialer.Dial(link, http.Header{"Host": {"evil.example:" + port(host)}})
		if err == nil {
			conn.Close()
			t.Fatal("a rebound host name opened the Socket Mode connection")
		}
	})
	t.Run("page_framed", func(t *testing.T) {
		resp, err := http.Get(d.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("Content-Security-Policy %q lets other sites frame the page", csp)
		}
		if xfo := resp.Header.Get("X-Frame-Options"); xfo != "DENY" {
			t.Errorf("X-Frame-Options %q, want DENY", xfo)
		}
	})

	if ms := d.Slack.Messages(nil); len(ms) != 0 {
		t.Errorf("%d messages were posted; the first: %q", len(ms), ms[0].Text)
	}
	if n := d.Slack.Connections(); n != 1 {
		t.Errorf("%d Socket Mode connections were opened, want the bot's one", n)
	}
}

// startDemo starts a demo on a throwaway cluster, stopped when the test
// ends.
func startDemo(t *testing.T) *demo.Demo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel) // after Stop: cleanups run last first
	d, err := demo.Start(ctx, demo.Options{Out: io.Discard, Log: io.Discard})
	if err != nil {
		t.Fatalf("start the demo: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stop the demo: %v", err)
		}
	})
	return d
}

// openLink asks for a Socket Mode URL with the run's app token, as the bot
// does.
func openLink(t *testing.T, api, app string) string {
	t.Helper()
	resp, err := http.PostForm(api+"apps.connections.open", url.Values{"token": {app}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		OK  bool   `json:"ok"`
		URL string `json:"url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || !ans.OK {
		t.Fatalf("apps.connections.open with the run's app token: %+v, %v", ans, err)
	}
	return ans.URL
}

func port(hostport string) string {
	_, p, _ := strings.Cut(hostport, ":")
	return p
}

// runTokens are the tokens the demo gave its bot.
func runTokens(d *demo.Demo) (bot, app string) {
	return d.Slack.BotToken(), d.Slack.AppToken()
}
