package approval

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// stallApprove holds the first write of an approval until its request has
// expired by the store's clock: the approving process read the request
// (and the store's time) before the expiry, then stalled (a GC pause, a
// paused VM, a slow network) before its UPDATE reached the store.
type stallApprove struct {
	request.Records
	once sync.Once
}

func (s *stallApprove) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	if r.State == string(request.Approved) {
		s.once.Do(func() {
			for {
				got, now, err := s.Records.Record(ctx, r.ID)
				if err != nil || !now.Before(got.Expires) {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return s.Records.UpdateRecord(ctx, r)
}

// An approval that reaches the store after the request expired by the
// store's clock never signals (docs/approvals.md: "the approval step
// compares it with the store's time in the same step"). Store.Apply reads
// the record and clock_timestamp() in one statement and writes in another
// (UPDATE … WHERE version = $2), which does not compare expires_at with
// the store's clock again: an approval judged on a read from before the
// expiry lands after it, is recorded as decided before it, and signals.
func TestApprovalLandingAfterExpiryDoesNotSignal(t *testing.T) {
	db := newFakeFleet()
	s := request.NewStore(&stallApprove{Records: pgStore(t)})
	w, _ := newFlow(t, db, s)
	r := made(t, s, 51, 300*time.Millisecond)
	w.Approve(ctx, on("UAPP", r), r.ID)
	got, _ := s.Get(ctx, r.ID)
	if n := db.signalled(); n != 0 {
		t.Errorf("request %s expired at %s by the store's clock; its approval landed after that and signalled %d time(s) (recorded decided at %s, state %s)",
			r.ID, got.Expires.Format("15:04:05.000"), n, got.Decided.Format("15:04:05.000"), got.State)
	}
}

// A request pgkill itself closed (its card overdue, or Slack refused the
// card) is never shown as withdrawn by its requester: the card says why
// pgkill closed it. outcomeText (blocks/approval.go) ignores NotSent for
// Withdrawn and names the requester.
func TestClosedByPgkillNotShownAsWithdrawnByRequester(t *testing.T) {
	s := request.Memory()
	w, out := newFlow(t, newFakeFleet(), s)
	r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(52)}, Requester: "UREQ", Channel: "C", ThreadTS: "1.0"}, time.Hour, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	waitDue(t, s, r.ID)
	w.SweepOnce(ctx)
	var card string
	for _, it := range out.put() {
		if it.Key == cardKey(r.ID) {
			js, _ := json.Marshal(it.Msg)
			card = string(js)
		}
	}
	if card == "" {
		t.Fatalf("no closing card was put")
	}
	if strings.Contains(card, "Withdrawn* by \\u003c@UREQ\\u003e") || !strings.Contains(card, "never posted") {
		t.Errorf("the card of a request pgkill closed says its requester withdrew it, not why: %s", card)
	}
}
