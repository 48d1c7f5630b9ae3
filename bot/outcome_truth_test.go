package bot

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// verifyFails signals (Sent) but cannot verify.
type verifyFails struct{ *fakePG }

func (f verifyFails) Verify(context.Context, pg.Outcome, time.Duration) (pg.Verification, error) {
	return pg.Verification{Locks: -1}, errors.New("verify 1 backends on t: connection reset")
}

// A signal that PostgreSQL accepted (Sent) and whose verification then
// failed must not be reported as "may or may not have been sent".
func TestVerifyErrorAfterSentSaysSent(t *testing.T) {
	db := verifyFails{newFakePG()}
	b := newTestBot(t, db, &fakeAPI{}, nil)
	ctx := context.Background()
	a, _, _ := b.requests.add(ctx, Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(31)}, Requester: "UREQ", Channel: "C",
		CardTS: "1.1", Requested: time.Now(), Expires: time.Now().Add(time.Hour)})
	b.Approve(ctx, clickBy("UAPP", a), a.ID)
	got, _, _ := b.requests.get(ctx, a.ID)
	js, _ := json.Marshal(b.card(got))
	t.Logf("outcome=%q err=%q", got.Outcome.Result, got.Err)
	if got.Outcome.Result == pg.Sent && strings.Contains(string(js), "may or may not have been sent") {
		t.Errorf("signal was sent (Outcome.Result=sent) but the card says it may or may not have been sent")
	}
}

// slowVerify blocks Verify until released.
type slowVerify struct {
	*fakePG
	release chan struct{}
}

func (f slowVerify) Verify(context.Context, pg.Outcome, time.Duration) (pg.Verification, error) {
	<-f.release
	return pg.Verification{Ended: true, How: "query ended"}, nil
}

// The sweep must not close as abandoned an approval whose process is alive
// and still verifying; here it does once stuckAfter has passed (on the
// sweeping process's clock), and the real outcome is lost.
func TestSweepSparesLiveApproval(t *testing.T) {
	botStores(t, func(t *testing.T, store StateStore) {
		db := slowVerify{newFakePG(), make(chan struct{})}
		b := newTestBot(t, db, &fakeAPI{}, store)
		ctx := context.Background()
		a, _, _ := b.requests.add(ctx, Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(32)}, Requester: "UREQ", Channel: "C",
			CardTS: "1.1", Requested: time.Now(), Expires: time.Now().Add(time.Hour)})
		done := make(chan struct{})
		go func() { defer close(done); b.Approve(ctx, clickBy("UAPP", a), a.ID) }()
		<-db.sent
		later := time.Now().Add(b.cfg.stuckAfter() + time.Second)
		sweeper := newTestBot(t, db, &fakeAPI{}, store) // another replica (or the same one's sweep)
		if store == nil {
			sweeper = b
		}
		sweeper.now = func() time.Time { return later }
		sweeper.sweepOnce(ctx)
		close(db.release)
		<-done
		got, _, _ := b.requests.get(ctx, a.ID)
		t.Logf("stored: state=%s outcome=%q verified.ended=%v err=%q", got.State, got.Outcome.Result, got.Verified.Ended, got.Err)
		if got.Err != "" {
			t.Errorf("a live, successful approval was recorded as abandoned")
		}
	})
}

// lostReply is a state store whose first Update commits but whose reply is
// lost (the connection drops after COMMIT).
type lostReply struct {
	StateStore
	lost bool
}

func (s *lostReply) Update(ctx context.Context, id, version int64, state string, doc []byte) (bool, error) {
	ok, err := s.StateStore.Update(ctx, id, version, state, doc)
	if err == nil && !s.lost && state == string(Approved) {
		s.lost = true
		return false, errors.New("state store: request → approved: unexpected EOF")
	}
	return ok, err
}

// An approval whose commit reply was lost: the approver is told "nothing
// was signalled; try again", but the request is approved in the store and
// nothing will ever signal it; a retry is answered "already approved".
func TestLostCommitReplyStillSignals(t *testing.T) {
	st, err := pg.OpenStore(context.Background(), pgtestStateDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	db := newFakePG()
	b := newTestBot(t, db, &fakeAPI{}, &lostReply{StateStore: st})
	ctx := context.Background()
	a, _, _ := b.requests.add(ctx, Approval{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(33)}, Requester: "UREQ", Channel: "C",
		CardTS: "1.1", Requested: time.Now(), Expires: time.Now().Add(time.Hour)})
	b.Approve(ctx, clickBy("UAPP", a), a.ID) // told: could not record, try again
	b.Approve(ctx, clickBy("UAPP", a), a.ID) // the retry
	got, _, _ := b.requests.get(ctx, a.ID)
	t.Logf("after approve + retry: state=%s signals=%d", got.State, db.signalled())
	if got.State == Approved && db.signalled() == 0 {
		t.Errorf("request approved in the store but never signalled; the retry cannot help")
	}
}

type verifySetFails struct{ *fakePG }

func (f verifySetFails) VerifySet(_ context.Context, outs []pg.Outcome, _ time.Duration) ([]pg.Verification, []error) {
	vs, errs := make([]pg.Verification, len(outs)), make([]error, len(outs))
	for i := range outs {
		vs[i], errs[i] = pg.Verification{Locks: -1}, errors.New("verify 2 backends on t: connection reset")
	}
	return vs, errs
}

// Bulk: members whose signal was Sent but whose verification failed are
// reported as "could not be signalled … may or may not have been sent", and
// left out of "Terminate the still running".
func TestBulkVerifyErrorAfterSentSaysSent(t *testing.T) {
	db := verifySetFails{newFakePG()}
	b := newTestBot(t, db, &fakeAPI{}, nil)
	ctx := context.Background()
	m := []pg.Backend{{Identity: identity(41), State: pg.StateActive}, {Identity: identity(42), State: pg.StateActive}}
	a, _, _ := b.requests.add(ctx, Approval{Action: pg.Cancel, Members: m, Backend: pg.Backend{Identity: pg.Identity{Target: "t"}}, Requester: "UREQ", Channel: "C",
		CardTS: "1.1", Requested: time.Now(), Expires: time.Now().Add(time.Hour)})
	b.Approve(ctx, clickBy("UAPP", a), a.ID)
	got, _, _ := b.requests.get(ctx, a.ID)
	js, _ := json.Marshal(b.card(got))
	if got.Results[0].Outcome.Result == pg.Sent && strings.Contains(string(js), "could not be signalled") {
		t.Errorf("signals were sent (result sent) but the card says they could not be signalled / may or may not have been sent")
	}
}
