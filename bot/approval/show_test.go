package approval

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// deadOut is the outbox of a process killed before it sent anything: what
// is put there never reaches Slack.
type deadOut struct{}

func (deadOut) Put(outbox.Item) {}

// A request closed by a process whose card edits never left it (SIGKILL
// with them queued, or a shutdown whose drain ended) is shown on its card
// by another process's sweep, once the showing is overdue; once Slack has
// that edit, no sweep shows it again.
func TestClosedCardShownByAnotherProcess(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(w *Workflow, r request.Request)
		want  string
	}{
		{"carried out", func(w *Workflow, r request.Request) { w.Approve(ctx, on("UAPP", r), r.ID) }, "ended"},
		{"denied", func(w *Workflow, r request.Request) { w.Deny(ctx, on("UAPP", r), r.ID) }, "Denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stores(t, func(t *testing.T, s *request.Store) {
				s.ShowWithin(100 * time.Millisecond)
				killed, _ := newFlow(t, newFakeFleet(), s)
				killed.out = deadOut{}
				other, out := newFlow(t, newFakeFleet(), s)
				r := made(t, s, 71, time.Hour)
				tc.close(killed, r)
				killed.Wait(5 * time.Second)
				closed, err := s.Get(ctx, r.ID)
				if err != nil || !closed.State.Closed() {
					t.Fatalf("the request is %s (%v), want closed", closed.State, err)
				}
				waitDue(t, s, r.ID)
				other.SweepOnce(ctx)
				other.Wait(5 * time.Second)
				var edits []outbox.Item
				for _, it := range out.put() {
					if it.Key == cardKey(r.ID) {
						edits = append(edits, it)
					}
				}
				if len(edits) != 1 || edits[0].TS != r.CardTS || !strings.Contains(edits[0].Msg.Text, tc.want) {
					t.Fatalf("the other process's sweep put %d edit(s) of the card %+v; want one of ts %s saying %q", len(edits), edits, r.CardTS, tc.want)
				}
				time.Sleep(150 * time.Millisecond) // past the showing's deadline, had it not been recorded
				other.SweepOnce(ctx)
				other.Wait(5 * time.Second)
				if n := len(out.put()); n != 1 {
					t.Errorf("%d items put after the card was shown, want the one edit", n)
				}
			})
		})
	}
}

// A press on an earlier card of a request (posted, then not recorded, and
// posted again) decides nothing and takes that card's buttons away; a
// press on the listing the thread hangs from leaves the listing alone.
func TestStaleCardLosesItsButtons(t *testing.T) {
	for _, tc := range []struct {
		name      string
		messageTS string
		stale     bool
	}{
		{"an earlier card in the thread", "1.0", true},
		{"the listing", "9.9", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := request.Memory()
			w, out := newFlow(t, newFakeFleet(), s)
			r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(81)}, Requester: "UREQ", Channel: "C", ThreadTS: "9.9"}, time.Hour, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Its first card (1.0) was never recorded; it was posted again.
			if _, err = s.Apply(ctx, r.ID, request.Event{Kind: request.Repost, Due: time.Minute}); err != nil {
				t.Fatal(err)
			}
			if r, err = s.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: "1.1"}); err != nil {
				t.Fatal(err)
			}
			w.Approve(ctx, Click{User: "UAPP", Channel: "C", Thread: "9.9", MessageTS: tc.messageTS, ResponseURL: "https://hooks.example/UAPP"}, r.ID)
			if got, _ := s.Get(ctx, r.ID); got.State != request.Pending {
				t.Fatalf("a press off the recorded card moved the request to %s", got.State)
			}
			var edited []string
			for _, it := range out.put() {
				if it.TS != "" {
					edited = append(edited, it.TS)
				}
			}
			if want := []string{tc.messageTS}; tc.stale && !slices.Equal(edited, want) || !tc.stale && len(edited) != 0 {
				t.Errorf("messages edited: %v (stale card: %v)", edited, tc.stale)
			}
		})
	}
}
