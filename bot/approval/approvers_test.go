package approval

import (
	"slices"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// A bulk card's approvers are those who may approve every target. A target
// whose rules name no approver may be approved by anyone, so it narrows
// nothing: the card must not mention people another target refuses.
func TestBulkCardApproversWithAnOpenTarget(t *testing.T) {
	on := func(target string, pid int32) pg.Backend {
		return pg.Backend{Identity: pg.Identity{Target: target, PID: pid, BackendStart: time.Unix(1, 0)}, State: pg.StateActive}
	}
	w, _ := newFlow(t, newFakeFleet(), request.Memory())
	p := &policy.Policy{Default: policy.Rules{}, Targets: []policy.TargetRules{ // default: anyone approves
		{Pattern: "t1", Rules: policy.Rules{Approvers: []string{"UA", "UB"}}},
		{Pattern: "t3", Rules: policy.Rules{Approvers: []string{"UB", "UC"}}},
	}}
	w.policy = policy.NewChecker(p, nil)
	members := []pg.Backend{on("t1", 1), on("open", 2), on("t3", 3)}
	got := w.cards.approvers(request.Request{Backend: members[0], Members: members})
	if want := []string{"UB"}; !slices.Equal(got, want) {
		var refused []string
		for _, u := range got {
			for _, m := range members {
				if d := w.policy.May(ctx, policy.Approve, u, "C", m.Target); !d.Allowed {
					refused = append(refused, u+" on "+m.Target)
				}
			}
		}
		t.Errorf("the card mentions approvers %v, want %v; the Approve check refuses %v", got, want, refused)
	}
}
