package approval

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

// lostFinish commits the first write of an outcome and loses its answer,
// and the read back that follows fails once: the write's fate is unknown
// until the next read.
type lostFinish struct {
	request.Records
	once     sync.Once
	readDown atomic.Bool
}

func (s *lostFinish) UpdateRecord(ctx context.Context, r pg.Record) (bool, error) {
	lose := false
	if r.State == string(request.Done) {
		s.once.Do(func() { lose = true })
	}
	won, err := s.Records.UpdateRecord(ctx, r)
	if !lose || err != nil {
		return won, err
	}
	s.readDown.Store(true)
	return false, fmt.Errorf("state store: request %d → done: unexpected EOF", r.ID)
}

func (s *lostFinish) Record(ctx context.Context, id int64) (pg.Record, time.Time, error) {
	if s.readDown.CompareAndSwap(true, false) {
		return pg.Record{}, time.Time{}, fmt.Errorf("state store: request %d: connection refused", id)
	}
	return s.Records.Record(ctx, id)
}

// An outcome whose write landed though its answer was lost is this
// process's own: the log does not say another process recorded it first.
func TestLostFinishAnswerIsOurs(t *testing.T) {
	for _, st := range recordStores {
		t.Run(st.name, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
			s := request.NewStore(&lostFinish{Records: st.recs(t)})
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
