package policy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/bot/policy"
)

var defaults = policy.Rules{Approvers: []string{"U0ANY"}, Channels: []string{"C0INC"}}

func TestParseAndFor(t *testing.T) {
	p, err := policy.Parse([]byte(`
# per-target rules
targets:
  prod:
    channels: [C0PROD]
    approvers: [S0DBA]
    approvals: {terminate: 2, bulk: 2}
  stage-*:
    approvers: "U0DEV, U0ALICE"
    viewers: anyone
`), defaults)
	if err != nil {
		t.Fatal(err)
	}
	prod := p.For("prod")
	if !slices.Equal(prod.Channels, []string{"C0PROD"}) || !slices.Equal(prod.Approvers, []string{"S0DBA"}) ||
		prod.Needed(policy.Terminate) != 2 || prod.Needed(policy.Cancel) != 1 || prod.Needed(policy.Bulk) != 2 {
		t.Errorf("prod = %+v", prod)
	}
	stage := p.For("stage-eu")
	if !slices.Equal(stage.Approvers, []string{"U0DEV", "U0ALICE"}) || !slices.Equal(stage.Channels, []string{"C0INC"}) || stage.Needed(policy.Terminate) != 1 {
		t.Errorf("stage = %+v", stage)
	}
	if other := p.For("dev"); !slices.Equal(other.Approvers, []string{"U0ANY"}) {
		t.Errorf("dev = %+v", other)
	}
	if got := p.Channels([]string{"prod", "dev"}); !slices.Equal(got, []string{"C0PROD", "C0INC"}) {
		t.Errorf("channels = %v", got)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	_, err := policy.Parse([]byte(`targets:
  prod:
    approvers: [bob]
    approvals: {terminate: 0, kill: 1}
    colour: red
  "[":
    channels: [D0DM]
other: 1
`), defaults)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`line 3: "bob" is not a Slack user ID`,
		`line 4: terminate: the number of approvers must be 1 to 10, not "0"`,
		`line 4: unknown kind "kill"`,
		`line 5: unknown key "colour"`,
		`line 6: target "[": `,
		`line 8: unknown key "other"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if _, err := policy.Parse([]byte("targets: [1"), defaults); err == nil || !strings.Contains(err.Error(), "YAML") {
		t.Errorf("broken YAML: %v", err)
	}
}

func TestParseApprovals(t *testing.T) {
	got, err := policy.ParseApprovals(" cancel=1, terminate=2 ,bulk=3")
	if err != nil || got[policy.Terminate] != 2 || got[policy.Bulk] != 3 || got[policy.Cancel] != 1 {
		t.Errorf("= %v, %v", got, err)
	}
	for _, bad := range []string{"kill=1", "terminate=0", "terminate", "bulk=x"} {
		if _, err := policy.ParseApprovals(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMay(t *testing.T) {
	p, err := policy.Parse([]byte(`targets:
  prod:
    channels: [C0PROD]
    viewers: [S0ONCALL]
    approvers: [S0DBA]
`), policy.Rules{Approvers: []string{"U0BOSS"}})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string][]string{"S0ONCALL": {"U0ON", "U0DBA"}, "S0DBA": {"U0DBA"}}
	c := policy.NewChecker(p, func(_ context.Context, g string) ([]string, error) { return groups[g], nil }, "C0ALERT")
	ctx := context.Background()
	tests := []struct {
		act                   policy.Act
		user, channel, target string
		allowed               bool
		why                   string
	}{
		{policy.View, "U0ON", "C0PROD", "prod", true, ""},
		{policy.View, "U0ON", "C0OTHER", "prod", false, "use it in <#C0PROD>"},
		{policy.View, "U0ON", "D0DM", "prod", false, "use it in <#C0PROD>"},
		{policy.View, "U0STRANGER", "C0PROD", "prod", false, "only <!subteam^S0ONCALL> may see *prod*"},
		{policy.Request, "U0ON", "C0PROD", "prod", true, ""},
		{policy.Request, "U0ON", "C0ALERT", "prod", true, ""}, // buttons on alerts
		{policy.View, "U0ON", "C0ALERT", "prod", false, "use it in"},
		{policy.Approve, "U0ON", "C0PROD", "prod", false, "only <!subteam^S0DBA> may approve"},
		{policy.Approve, "U0DBA", "C0PROD", "prod", true, ""},
		{policy.Approve, "U0DBA", "C0ANY", "stage", false, "only <@U0BOSS> may approve"},
		{policy.View, "U0STRANGER", "C0ANY", "stage", true, ""},
		{policy.Stop, "U0ON", "C0ALERT", "prod", true, ""}, // a rule's card in the alert channel
		{policy.Stop, "U0STRANGER", "C0ALERT", "prod", false, "only <!subteam^S0ONCALL> may see *prod*"},
		{policy.Stop, "U0ON", "C0OTHER", "prod", false, "use it in <#C0PROD>"},
	}
	for _, tc := range tests {
		d := c.May(ctx, tc.act, tc.user, tc.channel, tc.target)
		if d.Allowed != tc.allowed || !strings.Contains(d.Why, tc.why) {
			t.Errorf("May(%s, %s, %s, %s) = %+v, want %v %q", tc.act, tc.user, tc.channel, tc.target, d, tc.allowed, tc.why)
		}
	}
}

func TestReasons(t *testing.T) {
	for _, tc := range []struct {
		in                 string
		kind               string
		ask, required, bad bool
	}{
		{"", policy.Cancel, true, false, false},
		{"optional", policy.Terminate, true, false, false},
		{"off", policy.Terminate, false, false, false},
		{"required", policy.Cancel, true, true, false},
		{"terminate,bulk", policy.Cancel, true, false, false},
		{"terminate, bulk", policy.Terminate, true, true, false},
		{"always", "", false, false, true},
	} {
		r, err := policy.ParseReason(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParseReason(%q) error %v", tc.in, err)
			continue
		}
		if ask, req := r.Ask(tc.kind); !tc.bad && (ask != tc.ask || req != tc.required) {
			t.Errorf("ParseReason(%q).Ask(%s) = %v %v", tc.in, tc.kind, ask, req)
		}
	}
	for reason, ok := range map[string]bool{".": false, "x": false, "  kill it ": false, "report blocks checkout": true,
		"https://incident.example/42": true, "INC-42 locks orders table": true, strings.Repeat("word ", 200): false} {
		if err := policy.CheckReason(reason); (err == nil) != ok {
			t.Errorf("CheckReason(%q) = %v", reason, err)
		}
	}
}

// A key left blank (or an empty list) for channels:, viewers: or
// requesters: would mean "anywhere" or "anyone": refused with its line,
// and the words that say so on purpose are accepted.
func TestBlankKeysAreRefused(t *testing.T) {
	for _, body := range []string{
		"targets:\n  prod:\n    viewers:\n",
		"targets:\n  prod:\n    channels:\n",
		"targets:\n  prod:\n    requesters: []\n",
		"targets:\n  prod:\n    viewers: \"\"\n",
	} {
		_, err := policy.Parse([]byte(body), defaults)
		if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "anyone") && !strings.Contains(err.Error(), "anywhere") {
			t.Errorf("%q: %v", body, err)
		}
	}
	p, err := policy.Parse([]byte("targets:\n  prod:\n    viewers: anyone\n    channels: anywhere\n    requesters: anyone\n"), defaults)
	if err != nil {
		t.Fatal(err)
	}
	if r := p.For("prod"); len(r.Viewers) != 0 || len(r.Channels) != 0 || len(r.Requesters) != 0 || !r.InChannel("C0X") {
		t.Errorf("explicit anyone/anywhere = %+v", r)
	}
}
