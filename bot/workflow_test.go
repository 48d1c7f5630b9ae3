package bot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func pgtestStateDSN(t *testing.T) string { return pgtest.Database(t, "state_unit") }

// fakePG records signals; every backend is running and ends when signalled.
type fakePG struct {
	mu      sync.Mutex
	signals []pg.Identity
	sent    chan struct{} // closed at the first signal
}

func newFakePG() *fakePG { return &fakePG{sent: make(chan struct{})} }

func (f *fakePG) Names() []string        { return []string{"t"} }
func (f *fakePG) Specs() []pg.TargetSpec { return []pg.TargetSpec{{Name: "t"}} }
func (f *fakePG) List(context.Context, []string, pg.Filter) []pg.Listing {
	return []pg.Listing{{Target: "t"}}
}
func (f *fakePG) RoleSetting(context.Context, string, string, string, string) (string, string, error) {
	return "0", "the server's setting", nil
}
func (f *fakePG) Complete(_ context.Context, l pg.Listing) pg.Listing { return l }
func (f *fakePG) Backend(_ context.Context, target string, pid int32) (pg.Backend, error) {
	return pg.Backend{Identity: pg.Identity{Target: target, PID: pid}, State: pg.StateActive, BackendType: "client backend"}, nil
}
func (f *fakePG) SignalVerify(_ context.Context, a pg.Action, ids []pg.Identity, _ time.Duration) []pg.Attempt {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]pg.Attempt, len(ids))
	for i, id := range ids {
		if len(f.signals) == 0 {
			close(f.sent)
		}
		f.signals = append(f.signals, id)
		out[i] = pg.Attempt{Outcome: pg.Outcome{Action: a, ID: id, Result: pg.Sent}, Verified: pg.Verification{Ended: true, How: "query ended"}}
	}
	return out
}
func (f *fakePG) Doctor(context.Context, []string) []pg.Report { return nil }
func (f *fakePG) Ping(context.Context, string) error           { return nil }

func (f *fakePG) signalled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.signals)
}

// fakeAPI answers every Slack call at once, except chat.update while
// stallUpdates is set: then it waits until the call's context ends.
type fakeAPI struct {
	mu           sync.Mutex
	seq          int
	stallUpdates bool
	updates      int
}

func (f *fakeAPI) PostMessageContext(context.Context, string, ...slack.MsgOption) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return "C", fmt.Sprintf("1.%06d", f.seq), nil
}
func (f *fakeAPI) UpdateMessageContext(ctx context.Context, _, ts string, _ ...slack.MsgOption) (string, string, string, error) {
	f.mu.Lock()
	stall := f.stallUpdates
	f.updates++
	f.mu.Unlock()
	if stall {
		<-ctx.Done()
		return "", "", "", ctx.Err()
	}
	return "C", ts, "", nil
}
func (f *fakeAPI) SendMessageContext(context.Context, string, ...slack.MsgOption) (string, string, string, error) {
	return "", "", "", nil
}
func (f *fakeAPI) OpenViewContext(context.Context, string, slack.ModalViewRequest) (*slack.ViewResponse, error) {
	return &slack.ViewResponse{}, nil
}

func (f *fakeAPI) AuthTestContext(context.Context) (*slack.AuthTestResponse, error) {
	return &slack.AuthTestResponse{TeamID: "T1"}, nil
}
func (f *fakeAPI) GetUserGroupMembersContext(context.Context, string, ...slack.GetUserGroupMembersOption) ([]string, error) {
	return nil, nil
}

// newTestBot is a bot over fakes, with requests in memory or in a real
// state store.
func newTestBot(t testing.TB, db fleet.DB, api SlackAPI, store Store) *Bot {
	t.Helper()
	work, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := config.Config{Approvers: config.IDList{"UAPP"}, ApprovalTTL: time.Minute, VerifyTimeout: time.Second, ConnectTimeout: time.Second, Command: "/pgkill"}
	return New(work, cfg, db, api, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// failingGroups is a Slack whose usergroups.users.list fails once told to.
type failingGroups struct {
	fakeAPI
	mu   sync.Mutex
	fail bool
}

func (f *failingGroups) GetUserGroupMembersContext(context.Context, string, ...slack.GetUserGroupMembersOption) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, fmt.Errorf("slack is down")
	}
	return []string{"UMEMBER"}, nil
}

// When Slack cannot say who is in an approver group, the last known
// members are trusted only for a bounded time: a removed approver once kept
// approval rights for hours.
func TestGroupMembershipStalenessIsBounded(t *testing.T) {
	api := &failingGroups{}
	b := newTestBot(t, newFakePG(), api, nil)
	b.policy = policy.NewChecker(&policy.Policy{Default: policy.Rules{Approvers: []string{"S0DBA"}}}, b.access.groupMembers)
	clock := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	b.access.clock = func() time.Time { return clock }
	ctx := context.Background()
	if d := b.policy.May(ctx, policy.Approve, "UMEMBER", "C", "t"); !d.Allowed {
		t.Fatalf("member refused: %v", d.Why)
	}
	api.mu.Lock()
	api.fail = true
	api.mu.Unlock()
	clock = clock.Add(2 * time.Minute) // past the cache, within the staleness bound
	if d := b.policy.May(ctx, policy.Approve, "UMEMBER", "C", "t"); !d.Allowed {
		t.Error("a recent membership was not trusted while Slack is down")
	}
	clock = clock.Add(6 * time.Hour)
	d := b.policy.May(ctx, policy.Approve, "UMEMBER", "C", "t")
	if d.Allowed {
		t.Fatal("a membership six hours old was trusted while Slack is down")
	}
	if !strings.Contains(d.Why, "S0DBA") || !strings.Contains(d.Why, "last known members") {
		t.Errorf("refusal does not say why: %v", d.Why)
	}
}
