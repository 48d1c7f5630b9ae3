package approval

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// countedSets counts the sets written.
type countedSets struct {
	request.Sets
	mu  sync.Mutex
	put int
}

func (s *countedSets) Put(ctx context.Context, set request.Set) (string, error) {
	s.mu.Lock()
	s.put++
	s.mu.Unlock()
	return s.Sets.Put(ctx, set)
}

// Nothing about the sessions or targets a click names is said, and nothing
// is written, before the policy has allowed the person who clicked: a
// stranger's click gets the policy's refusal, and only that.
func TestPolicyComesFirst(t *testing.T) {
	active := func(pid int32) pg.Backend { return pg.Backend{Identity: identity(pid), State: pg.StateActive} }
	idle := func(pid int32) pg.Backend {
		return pg.Backend{Identity: identity(pid), State: pg.StateIdleInTransaction}
	}
	tests := []struct {
		name   string
		click  func(t *testing.T, w *Workflow, s *request.Store)
		secret string // what the stranger must not be told
		refuse string
	}{
		{"bulk over the limit", func(t *testing.T, w *Workflow, _ *request.Store) {
			w.AskSet(ctx, Click{User: "USTRANGER", Channel: "C", ResponseURL: "https://hooks.example/USTRANGER"}, pg.Cancel,
				request.Set{Scope: "app=secret-report", Members: []pg.Backend{active(61), active(62), active(63)}})
		}, "3 sessions match", "only <@UREQ> may ask"},
		{"bulk with nothing to cancel", func(t *testing.T, w *Workflow, _ *request.Store) {
			w.AskSet(ctx, Click{User: "USTRANGER", Channel: "C", ResponseURL: "https://hooks.example/USTRANGER"}, pg.Cancel,
				request.Set{Scope: "app=secret-report", Members: []pg.Backend{idle(64)}})
		}, "secret-report", "only <@UREQ> may ask"},
		{"approve on a target this replica does not know", func(t *testing.T, w *Workflow, s *request.Store) {
			r, _, _ := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: pg.Identity{Target: "secret-target", PID: 65, BackendStart: time.Now()}},
				Requester: "UREQ", Channel: "C"}, time.Hour, 0)
			r, _ = s.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: "1.1"})
			w.Approve(ctx, on("USTRANGER", r), r.ID)
		}, "does not know target", "only <@UAPP> may approve"},
		{"next step on a pending request", func(t *testing.T, w *Workflow, s *request.Store) {
			r := made(t, s, 0, time.Hour, active(66), active(67))
			w.Next(ctx, on("USTRANGER", r), r.ID)
		}, "still running", "only <@UREQ> may ask"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := request.Memory()
			w, out := newFlow(t, newFakeFleet(), s, flowOpts{budget: time.Minute, margin: time.Minute, requesters: []string{"UREQ"}})
			w.cfg.BulkMax = 2
			sets := &countedSets{Sets: w.sets}
			w.sets = sets
			tc.click(t, w, s)
			got := told(out, "USTRANGER")
			if strings.Contains(got, tc.secret) || !strings.Contains(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">").Replace(got), tc.refuse) {
				t.Errorf("the stranger was told %s; want only the refusal %q", got, tc.refuse)
			}
			if sets.put != 0 {
				t.Errorf("a stranger's click wrote %d set(s)", sets.put)
			}
		})
	}
}

// A bulk request's card mentions who may approve it: an approver of every
// one of its targets (each target is checked at the click), not the first
// target's approvers alone.
func TestBulkCardMentionsApproversOfEveryTarget(t *testing.T) {
	on := func(target string, pid int32) pg.Backend {
		return pg.Backend{Identity: pg.Identity{Target: target, PID: pid, BackendStart: time.Unix(1, 0)}, State: pg.StateActive}
	}
	tests := []struct {
		name    string
		members []pg.Backend
		want    []string
	}{
		{"one target", []pg.Backend{on("t1", 1), on("t1", 2)}, []string{"UA", "UB"}},
		{"approvers in common", []pg.Backend{on("t1", 1), on("t2", 2)}, []string{"UB"}},
		{"none in common: all who might", []pg.Backend{on("t1", 1), on("t3", 2)}, []string{"UA", "UB", "UC"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, _ := newFlow(t, newFakeFleet(), request.Memory())
			w.policy = policy.NewChecker(&policy.Policy{Default: policy.Rules{Approvers: []string{"UA", "UB"}}, Targets: []policy.TargetRules{
				{Pattern: "t2", Rules: policy.Rules{Approvers: []string{"UB", "UC"}}},
				{Pattern: "t3", Rules: policy.Rules{Approvers: []string{"UC"}}},
			}}, nil)
			got := w.cards.approvers(request.Request{Backend: tc.members[0], Members: tc.members})
			if !slices.Equal(got, tc.want) {
				t.Errorf("approvers %v, want %v", got, tc.want)
			}
		})
	}
}

// Stop and Withdraw pressed by someone the policy refuses, on a message that
// is not the request's card: the refusal, and nothing about the card nor
// who asked, nor any edit of that message.
func TestStopAndWithdrawPolicyFirst(t *testing.T) {
	off := func(user string, r request.Request) Click {
		c := on(user, r)
		c.MessageTS, c.Thread = "0.5", "0.1"
		return c
	}
	t.Run("stop", func(t *testing.T) {
		s := request.Memory()
		w, out := newFlow(t, newFakeFleet(), s, flowOpts{budget: time.Minute, margin: time.Minute, viewers: []string{"UAPP", "UVIEW"}})
		r := fired(t, w, s, firing(rule("stop", autopilot.Act, time.Hour), 601))
		n := len(out.put())
		w.Autopilot().Stop(ctx, off("USTRANGER", r), r.ID)
		if got := told(out, "USTRANGER"); strings.Contains(got, "card") || !strings.Contains(got, "may") {
			t.Errorf("the stranger was told %s; want only the policy's refusal", got)
		}
		if edits := len(out.put()) - n; edits != 1 { // the refusal alone
			t.Errorf("%d items put, want the refusal alone", edits)
		}
	})
	t.Run("withdraw", func(t *testing.T) {
		s := request.Memory()
		w, out := newFlow(t, newFakeFleet(), s, flowOpts{budget: time.Minute, margin: time.Minute, requesters: []string{"UREQ"}})
		r := made(t, s, 602, time.Hour)
		w.Withdraw(ctx, off("USTRANGER", r), r.ID)
		if got := told(out, "USTRANGER"); strings.Contains(got, "card") || !strings.Contains(got, "may") {
			t.Errorf("the stranger was told %s; want only the policy's refusal", got)
		}
	})
}
