package approval

import (
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// Without a state store, request IDs start again at R1 when pgkill
// restarts, so a button naming R1 on an old message in a listing's thread
// may belong to a request made before the restart — not to an earlier card
// of today's R1. A press on it must not edit that message: it is the only
// record in Slack of what the old request was (or did), and "posted again
// in a newer card" would send the approver to a card for another backend.
func TestStaleCardEditOnlyOfItsOwnRequest(t *testing.T) {
	before := request.Memory() // the process before the restart
	old, _, err := before.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: identity(81)}, Requester: "UREQ", Channel: "C", ThreadTS: "9.9"}, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	if old, err = before.Apply(ctx, old.ID, request.Event{Kind: request.Posted, CardTS: "1.1"}); err != nil {
		t.Fatal(err)
	}

	after := request.Memory() // restarted: the same listing, another backend
	w, out := newFlow(t, newFakeFleet(), after)
	r, _, err := after.Add(ctx, request.Request{Action: pg.Terminate, Backend: pg.Backend{Identity: identity(82)}, Requester: "UREQ", Channel: "C", ThreadTS: "9.9"}, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = after.Apply(ctx, r.ID, request.Event{Kind: request.Posted, CardTS: "1.5"}); err != nil {
		t.Fatal(err)
	}
	if r.ID != old.ID {
		t.Fatalf("IDs %s and %s: the memory store no longer reuses IDs after a restart", old.ID, r.ID)
	}

	// The approver presses Approve on the old card (pid 81), still on screen.
	w.Approve(ctx, Click{User: "UAPP", Channel: "C", Thread: "9.9", MessageTS: old.CardTS, ResponseURL: "https://hooks.example/UAPP"}, old.ID)
	w.Wait(5 * time.Second)
	if got, _ := after.Get(ctx, r.ID); got.State != request.Pending {
		t.Fatalf("a press on another request's card moved %s to %s", r.ID, got.State)
	}
	for _, it := range out.put() {
		if it.TS == old.CardTS {
			t.Errorf("pgkill edited message %s, the card of a request made before the restart (pid 81), to %q", it.TS, it.Msg.Text)
		}
	}
}
