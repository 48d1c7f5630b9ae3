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

	"github.com/pgkill/pgkill/bot/fakeslack"
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
func (f *fakePG) Backend(_ context.Context, target string, pid int32) (pg.Backend, error) {
	return pg.Backend{Identity: pg.Identity{Target: target, PID: pid}, State: pg.StateActive, BackendType: "client backend"}, nil
}
func (f *fakePG) Signal(_ context.Context, a pg.Action, id pg.Identity) (pg.Outcome, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.signals) == 0 {
		close(f.sent)
	}
	f.signals = append(f.signals, id)
	return pg.Outcome{Action: a, Result: pg.Sent}, nil
}
func (f *fakePG) Verify(context.Context, pg.Outcome, time.Duration) (pg.Verification, error) {
	return pg.Verification{Ended: true, How: "query ended"}, nil
}
func (f *fakePG) SignalSet(ctx context.Context, a pg.Action, ids []pg.Identity) ([]pg.Outcome, []error) {
	outs := make([]pg.Outcome, len(ids))
	for i, id := range ids {
		outs[i], _ = f.Signal(ctx, a, id)
	}
	return outs, make([]error, len(ids))
}
func (f *fakePG) VerifySet(_ context.Context, outs []pg.Outcome, _ time.Duration) ([]pg.Verification, []error) {
	vs := make([]pg.Verification, len(outs))
	for i := range vs {
		vs[i] = pg.Verification{Ended: true, How: "query ended"}
	}
	return vs, make([]error, len(outs))
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
func newTestBot(t testing.TB, db Postgres, api SlackAPI, store StateStore) *Bot {
	t.Helper()
	work, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := Config{Approvers: IDList{"UAPP"}, ApprovalTTL: time.Minute, VerifyTimeout: time.Second, ConnectTimeout: time.Second, Command: "/pgkill"}
	return New(work, cfg, db, api, store, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// botStores runs test against a bot with each request store.
func botStores(t *testing.T, test func(t *testing.T, store StateStore)) {
	t.Run("memory", func(t *testing.T) { test(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		st, err := pg.OpenStore(context.Background(), pgtestStateDSN(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		test(t, st)
	})
}

// clickBy is user's click on a's card.
func clickBy(user string, a Approval) slack.InteractionCallback {
	var cb slack.InteractionCallback
	cb.User.ID = user
	cb.Channel.ID = a.Channel
	cb.Container.MessageTs = a.CardTS
	return cb
}

// An approval that arrives after the request expired must not signal,
// whether or not a timer expired it first (the timer may never have been
// armed in this process: another process made the request, or the
// pending→expired step failed).
func TestApproveAfterExpiryDoesNotSignal(t *testing.T) {
	botStores(t, func(t *testing.T, store StateStore) {
		db := newFakePG()
		b := newTestBot(t, db, &fakeAPI{}, store)
		now := time.Now()
		a, _, err := b.requests.add(context.Background(), Approval{
			Action: pg.Cancel, Backend: pg.Backend{Identity: identity(11)}, Requester: "UREQ", Channel: "C", CardTS: "1.1",
			Requested: now.Add(-2 * time.Minute), Expires: now.Add(-time.Second),
		})
		if err != nil {
			t.Fatal(err)
		}
		b.Approve(context.Background(), clickBy("UAPP", a), a.ID)
		if n := db.signalled(); n != 0 {
			t.Fatalf("an expired request signalled %d time(s)", n)
		}
		if got, _, _ := b.requests.get(context.Background(), a.ID); got.State != Expired {
			t.Errorf("state after a late approval = %s, want expired", got.State)
		}
	})
}

// The kill path must not wait on Slack: with chat.update hanging, the
// approved backend is signalled at once.
func TestApproveSignalsBeforeSlack(t *testing.T) {
	db := newFakePG()
	api := &fakeAPI{stallUpdates: true}
	b := newTestBot(t, db, api, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, _, err := b.requests.add(ctx, Approval{
		Action: pg.Cancel, Backend: pg.Backend{Identity: identity(12)}, Requester: "UREQ", Channel: "C",
		CardTS: "1.000001", Requested: time.Now(), Expires: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); b.Approve(ctx, clickBy("UAPP", a), a.ID) }()
	select {
	case <-db.sent:
	case <-time.After(20 * time.Second):
		t.Fatal("no signal while chat.update hangs: the kill path waits on Slack")
	}
	cancel()
	<-done
}

// The housekeeping sweep expires a request that no timer of this process
// knows about (another process made it), and finishes an approval that a
// stopped process left half done — saying the signal may have been sent.
func TestSweepExpiresAndRecovers(t *testing.T) {
	botStores(t, func(t *testing.T, store StateStore) {
		ctx := context.Background()
		b := newTestBot(t, newFakePG(), &fakeAPI{}, store)
		now := time.Now()
		late, _, err := b.requests.add(ctx, Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(21)}, Requester: "UREQ",
			Requested: now.Add(-2 * time.Minute), Expires: now.Add(-time.Second)})
		if err != nil {
			t.Fatal(err)
		}
		live, _, _ := b.requests.add(ctx, Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(22)}, Requester: "UREQ",
			Requested: now, Expires: now.Add(time.Hour)})
		stuck, _, _ := b.requests.add(ctx, Approval{Action: pg.Terminate, Backend: pg.Backend{Identity: identity(23)}, Requester: "UREQ",
			Requested: now.Add(-time.Hour), Expires: now.Add(time.Hour)})
		if _, ok, err := b.requests.transition(ctx, stuck.ID, Pending, Approved, func(x *Approval) error {
			x.Decider, x.Decided = "UAPP", now.Add(-time.Hour)
			return nil
		}); !ok || err != nil {
			t.Fatal(ok, err)
		}
		// An approval counts as abandoned by the store's clock: it has not
		// changed for stuckAfter. In memory the approving process is the one
		// sweeping, alive by definition: it is never abandoned.
		wantStuck := Approved
		if store != nil {
			n, _ := requestID(stuck.ID)
			pgtest.ExecIn(t, pgtestStateDSN(t), "UPDATE pgkill_request SET updated_at = clock_timestamp() - interval '1 hour' WHERE id = $1", n)
			wantStuck = Done
		}

		b.sweepOnce(ctx)
		for _, c := range []struct {
			id   string
			want State
		}{{late.ID, Expired}, {live.ID, Pending}, {stuck.ID, wantStuck}} {
			if got, _, _ := b.requests.get(ctx, c.id); got.State != c.want {
				t.Errorf("%s after the sweep: %s, want %s", c.id, got.State, c.want)
			}
		}
		if got, _, _ := b.requests.get(ctx, stuck.ID); store != nil && !strings.Contains(got.Err, "may or may not have been sent") {
			t.Errorf("abandoned approval recorded as %q", got.Err)
		}
	})
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
	b.now = func() time.Time { return clock }
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

// Names chosen by database clients are shown verbatim in the audit channel:
// never as mrkdwn formatting, mentions or links; pgkill itself is never
// shown as a user mention.
func TestAuditLineFormatsUntrustedNames(t *testing.T) {
	fake := fakeslack.New(t)
	api := slack.New(fakeslack.BotToken, slack.OptionAPIURL(fake.APIURL()))
	b := newTestBot(t, newFakePG(), api, nil)
	b.cfg.AuditChannel = "CAUDIT"
	a := Approval{ID: "R7", Action: pg.Terminate, Requester: "UREQ", State: Expired, Backend: pg.Backend{
		Identity: identity(31), User: "*bold*_it_", Database: "see https://evil.example/x <!here>", Application: "~strike~"}}
	b.audit(context.Background(), AuditExpire, "", a)
	var text string
	fake.Eventually(t, 10*time.Second, "the audit line", func() bool {
		ms := fake.Messages(func(m fakeslack.Message) bool { return m.Channel == "CAUDIT" })
		if len(ms) > 0 {
			text = string(ms[0].Blocks)
		}
		return text != ""
	})
	for _, bad := range []string{"<@pgkill>", "<@>", " *bold*", "<!here>", "by <@"} {
		if strings.Contains(text, bad) {
			t.Errorf("audit line contains %q: %s", bad, text)
		}
	}
	for _, want := range []string{"`*bold*_it_`", "`see https://evil.example/x", "`~strike~`", "R7", "expire", "by pgkill"} {
		if !strings.Contains(text, want) {
			t.Errorf("audit line lacks %q: %s", want, text)
		}
	}
}
