package request_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

// blip fails RecordsWith: the state store did not answer one read.
type blip struct{ request.Records }

func (blip) RecordsWith(context.Context, string) ([]pg.Record, error) {
	return nil, errors.New("state store: connection reset by peer")
}

// InFlight cannot say "no request is being carried out" when it could not
// read the store: the alert watcher (bot/alert/alert.go poll) resolves an
// alert whose query is gone as soon as InFlight says false, and credits the
// request only if EndedBy finds it — so a one-read blip while an approval
// is signalling resolves the alert as ended by itself, crediting nobody.
func TestInFlightUnknownIsNotNo(t *testing.T) {
	st, err := pg.OpenStore(ctx, pgtest.Database(t, "request_unit"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	s := request.NewStore(st)
	id := identity(77)
	r, _, err := s.Add(ctx, request.Request{Action: pg.Cancel, Backend: pg.Backend{Identity: id}, Requester: "UREQ"}, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, r.ID, approve("UAPP")); err != nil {
		t.Fatal(err)
	}
	if busy, err := s.InFlight(ctx, id); !busy || err != nil {
		t.Fatalf("an approved request is not in flight: %v", err)
	}
	if busy, err := request.NewStore(blip{st}).InFlight(ctx, id); !busy && err == nil {
		t.Errorf("request %s is being carried out, but a failed read makes InFlight say no (and the alert is resolved uncredited)", r.ID)
	}
	if _, found, err := request.NewStore(blip{st}).EndedBy(ctx, id); !found && err == nil {
		t.Errorf("a failed read makes EndedBy say no request ended it")
	}
}
