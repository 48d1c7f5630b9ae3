package policy_test

import (
	"testing"

	"github.com/pgkill/pgkill/bot/policy"
)

// FuzzParse reads policy files as a person might write them — per-target
// rules and autopilot rules, broken in every way: Parse answers with a
// policy or an error naming the line, and never takes the process down
// (it runs at start-up and on every SIGHUP).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"targets:\n  prod:\n    channels: [C0PROD]\n    approvers: [S0DBA]\n    approvals: {terminate: 2, bulk: 2}\n  stage-*:\n    approvers: \"U0DEV, U0ALICE\"\n    viewers: anyone\n",
		"autopilot:\n  - name: search-runaways\n    match: {app: search-api, state: active, duration: 30s}\n    action: cancel\n    countdown: 30s\n    mode: act\n  - name: idle-blockers\n    match: {state: idle in transaction, duration: 1m, blocking: 2}\n    action: terminate\n    countdown: 1m\n",
		"autopilot:\n  - name: a\n    targets: [prod, 'stage-*']\n    match: {user: '[x', transaction_age: 10m, waiting: 30s}\n    action: cancel-then-terminate\n    escalate_after: 1m\n    limit: 3 per 1h\n",
		"targets:\n  prod:\n    viewers:\n", "protect: user=rdsadmin\n", "{", "- a\n- b", "targets: [1, 2]", "autopilot: {}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := policy.Parse(data, defaults)
		if err != nil {
			return
		}
		if p == nil {
			t.Fatal("no error and no policy")
		}
		p.For("prod")
		p.Channels([]string{"prod", "stage-eu"})
	})
}
