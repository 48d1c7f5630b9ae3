package approval

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// An outcome whose write landed though its answer was lost is this
// process's own: the log does not say another process recorded it first.
func TestLostFinishAnswerIsOurs(t *testing.T) {
	for _, st := range recordStores {
		t.Run(st.name, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
			s := request.NewStore(&lostWrite{Records: st.recs(t), state: request.Done, commit: true, once: true})
			db := newFakeFleet()
			w, _ := newFlow(t, db, s, flowOpts{budget: time.Minute, margin: time.Minute, log: log})
			r := made(t, s, 95, time.Hour)
			w.Approve(ctx, on("UAPP", r), r.ID)
			w.Wait(5 * time.Second)
			got, err := s.Get(ctx, r.ID)
			if err != nil || got.State != request.Done || got.Outcome.Result != pg.Sent || db.signalled() != 1 {
				t.Fatalf("request %s %s (%v), outcome %+v, %d signal(s)", r.ID, got.State, err, got.Outcome, db.signalled())
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Contains(logs.String(), "recorded elsewhere first") {
				t.Errorf("the log says another process recorded this process's own outcome:\n%s", logs.String())
			}
		})
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
