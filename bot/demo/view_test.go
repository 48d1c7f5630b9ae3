package demo_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/bot/fakeslack"
)

// TestPageModals drives the page's modal endpoints against the real bot:
// Terminate (a reason required in the demo) opens the form for the
// requester only; submissions of someone else's form, of a form no longer
// open, or naming inputs it lacks are refused; an empty reason is answered
// with the bot's error and the form stays; Back drops it, and no request is
// made.
func TestPageModals(t *testing.T) {
	d := startDemo(t)
	slack := fakeslack.Wrap(d.Slack)
	post := func(path string, body any) (int, string) {
		t.Helper()
		data, _ := json.Marshal(body)
		resp, err := http.Post(d.URL+path, "application/json", bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(out))
	}
	type modal struct {
		ID     string
		HTML   string
		Errors map[string]string
	}
	state := func(as string) *modal {
		t.Helper()
		resp, err := http.Get(d.URL + "state?as=" + as)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s struct{ Modal *modal }
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s.Modal
	}

	if code, body := post("command", map[string]string{"as": demo.Requester, "channel": demo.ChannelIncident, "text": "/pgkill 0s app=nightly-report"}); code != http.StatusNoContent {
		t.Fatalf("/pgkill: %d %s", code, body)
	}
	var listing fakeslack.Message
	slack.Eventually(t, 30*time.Second, "the listing", func() bool {
		ms := d.Slack.Messages(func(m fakeslack.Message) bool { return strings.Contains(string(m.Blocks), "pgkill_terminate") })
		if len(ms) > 0 {
			listing = ms[0]
		}
		return len(ms) > 0
	})
	block, value, err := fakeslack.FindButton(listing, "pgkill_terminate", "")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := post("click", map[string]string{"as": demo.Requester, "channel": listing.Channel, "ts": listing.TS,
		"actionID": "pgkill_terminate", "blockID": block, "value": value}); code != http.StatusNoContent {
		t.Fatalf("Terminate: %d %s", code, body)
	}
	slack.Eventually(t, 30*time.Second, "the reason form", func() bool { return len(d.Slack.Modals(demo.Requester)) > 0 })
	m := state(demo.Requester)
	if m == nil || !strings.Contains(m.HTML, `<textarea class="bk-text-input" data-block-id="reason"`) || !strings.Contains(m.HTML, "Terminate pid") {
		t.Fatalf("the requester's state holds no reason form: %+v", m)
	}
	if other := state(demo.Approver); other != nil {
		t.Errorf("the approver sees the requester's form: %+v", other)
	}

	reason := func(text string) map[string]map[string]string {
		return map[string]map[string]string{"reason": {"reason_text": text}}
	}
	for _, tc := range []struct {
		name   string
		body   map[string]any
		answer string
	}{
		{"someone_elses", map[string]any{"as": demo.Approver, "modal": m.ID, "values": reason("INC-1: a fine reason")}, "no longer open"},
		{"unknown_person", map[string]any{"as": "U0NOBODY", "modal": m.ID, "values": reason("INC-1: a fine reason")}, "no person"},
		{"another_id", map[string]any{"as": demo.Requester, "modal": "1.1.trig", "values": reason("INC-1: a fine reason")}, "no longer open"},
		{"unknown_input", map[string]any{"as": demo.Requester, "modal": m.ID, "values": map[string]map[string]string{"reason": {"x": "y"}}}, `no input "x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, body := post("submit", tc.body); code != http.StatusBadRequest || !strings.Contains(body, tc.answer) {
				t.Errorf("answered %d %q, want 400 saying %q", code, body, tc.answer)
			}
		})
	}

	code, body := post("submit", map[string]any{"as": demo.Requester, "modal": m.ID, "values": reason("")})
	var ans struct {
		Open   bool
		Errors map[string]string
	}
	if err := json.Unmarshal([]byte(body), &ans); code != http.StatusOK || err != nil {
		t.Fatalf("empty reason: %d %s (%v)", code, body, err)
	}
	const want = "Say why in a few words (at least three), or paste the incident link."
	if !ans.Open || ans.Errors["reason"] != want {
		t.Errorf("empty required reason: open %v, errors %v; want the form open with %q", ans.Open, ans.Errors, want)
	}
	if again := state(demo.Requester); again == nil || again.ID != m.ID || again.Errors["reason"] != want {
		t.Errorf("after the refusal the state holds %+v, want the same form with its error", again)
	}

	if code, body := post("close", map[string]string{"as": demo.Requester, "modal": m.ID}); code != http.StatusNoContent {
		t.Fatalf("Back: %d %s", code, body)
	}
	if gone := state(demo.Requester); gone != nil {
		t.Errorf("the form is still drawn after Back: %+v", gone)
	}
	if code, body := post("submit", map[string]any{"as": demo.Requester, "modal": m.ID, "values": reason("INC-1: a fine reason")}); code != http.StatusBadRequest {
		t.Errorf("a closed form was submitted: %d %s", code, body)
	}
	if cards := d.Slack.Messages(func(m fakeslack.Message) bool { return strings.Contains(string(m.Blocks), "pgkill_approve") }); len(cards) != 0 {
		t.Errorf("a request was made from a refused or closed form: %d approval cards", len(cards))
	}
}
