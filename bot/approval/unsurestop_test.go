package approval

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/autopilot"
	"github.com/pgkill/pgkill/bot/request"
)

// A Stop on a rule's card whose write's answer was lost may not have been
// recorded: the rule then acts when its countdown ends. Whoever pressed
// Stop — to keep the query alive — must not be told that nothing will be
// signalled and then see the rule signal it.
func TestLostStopAnswerDoesNotPromiseNothingWillBeSignalled(t *testing.T) {
	for _, st := range recordStores {
		t.Run(st.name, func(t *testing.T) {
			recs := st.recs(t)
			lost := &lostWrite{Records: recs, state: request.Denied} // a Stop, lost before it commits
			db := newFakeFleet()
			w, out := newFlow(t, db, request.NewStore(lost), flowOpts{budget: time.Minute, margin: time.Minute, viewers: []string{"UAPP", "UVIEW"}})
			s := request.NewStore(recs)
			r := fired(t, w, s, firing(rule("stop-lost", autopilot.Act, 300*time.Millisecond), 503))
			w.Autopilot().Stop(ctx, on("UVIEW", r), r.ID)
			said := told(out, "UVIEW")
			lost.down.Store(false) // the store answers again; the Stop never landed

			deadline := time.Now().Add(30 * time.Second)
			for db.signalled() == 0 && time.Now().Before(deadline) {
				w.SweepOnce(ctx)
				w.Wait(5 * time.Second)
				time.Sleep(50 * time.Millisecond)
			}
			if db.signalled() == 0 {
				t.Fatalf("the rule never acted after a Stop that did not land; told %s", said)
			}
			if strings.Contains(said, "nothing will be") {
				t.Errorf("whoever pressed Stop was told %s — then the rule signalled pid %d (%d signal(s))", said, r.Backend.PID, db.signalled())
			}
		})
	}
}
