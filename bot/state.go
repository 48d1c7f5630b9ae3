package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// StateStore is what pgkill needs of a persistent state store (pg.Store,
// PGKILL_STATE_DSN). Each method fails only when the store's database does.
type StateStore interface {
	AddRequest(ctx context.Context, dedup string, doc []byte) (pg.StoredRequest, bool, error)
	Request(ctx context.Context, id int64) (pg.StoredRequest, error)
	// Transition changes state from → to with the new doc, atomically; false
	// when the request was not in state from.
	Transition(ctx context.Context, id int64, from, to string, doc []byte) (bool, error)
	RequestsByDedup(ctx context.Context, dedups []string, state string) ([]pg.StoredRequest, error)
	RequestsIn(ctx context.Context, state string) ([]pg.StoredRequest, error)
	PruneRequests(ctx context.Context, before time.Time) error
	ClaimAlert(ctx context.Context, target, key string, doc []byte) (bool, []byte, error)
	PutAlert(ctx context.Context, target, key string, doc []byte) error
	DeleteAlert(ctx context.Context, key string) error
	Alerts(ctx context.Context, target string) (map[string][]byte, error)
}

// storedRequests keeps requests in the state store, so they survive a
// restart and two bot processes decide each exactly once.
type storedRequests struct {
	store StateStore
	now   func() time.Time
}

// approvalDoc is a request as stored; the ID and state live in columns.
type approvalDoc struct {
	Approval
	BackendDuration time.Duration // pg.Backend does not serialise its duration
}

func encodeApproval(a Approval) ([]byte, error) {
	return json.Marshal(approvalDoc{Approval: a, BackendDuration: a.Backend.Duration})
}

func decodeApproval(r pg.StoredRequest) (Approval, error) {
	var d approvalDoc
	if err := json.Unmarshal(r.Doc, &d); err != nil {
		return Approval{}, fmt.Errorf("stored request %d: %w", r.ID, err)
	}
	a := d.Approval
	a.Backend.Duration = d.BackendDuration
	a.ID, a.State = "R"+strconv.FormatInt(r.ID, 10), State(r.State)
	return a, nil
}

// dedupKey names one action on one statement execution.
func dedupKey(action pg.Action, id pg.Identity) string {
	return strings.Join([]string{string(action), id.Target, strconv.Itoa(int(id.PID)),
		id.BackendStart.UTC().Format(time.RFC3339Nano), id.QueryStart.UTC().Format(time.RFC3339Nano),
		id.ServerStart.UTC().Format(time.RFC3339Nano)}, "|")
}

func requestID(id string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "R"), 10, 64)
	return n, err == nil && strings.HasPrefix(id, "R")
}

func (s *storedRequests) add(ctx context.Context, a Approval) (Approval, bool, error) {
	_ = s.store.PruneRequests(ctx, s.now().Add(-keepDecided)) // best effort
	a.State = Pending
	doc, err := encodeApproval(a)
	if err != nil {
		return a, false, err
	}
	r, created, err := s.store.AddRequest(ctx, dedupKey(a.Action, a.Backend.Identity), doc)
	if err != nil {
		return a, false, err
	}
	got, err := decodeApproval(r)
	return got, created, err
}

func (s *storedRequests) get(ctx context.Context, id string) (Approval, bool, error) {
	n, ok := requestID(id)
	if !ok {
		return Approval{}, false, nil
	}
	r, err := s.store.Request(ctx, n)
	if err != nil {
		if errors.Is(err, pg.ErrNotFound) {
			return Approval{}, false, nil
		}
		return Approval{}, false, err
	}
	a, err := decodeApproval(r)
	return a, err == nil, err
}

func (s *storedRequests) transition(ctx context.Context, id string, from, to State, change func(*Approval)) (Approval, bool, error) {
	a, ok, err := s.get(ctx, id)
	if err != nil || !ok || a.State != from {
		return a, false, err
	}
	a.State = to
	if change != nil {
		change(&a)
	}
	doc, err := encodeApproval(a)
	if err != nil {
		return a, false, err
	}
	n, _ := requestID(id)
	won, err := s.store.Transition(ctx, n, string(from), string(to), doc)
	if err != nil {
		return a, false, err
	}
	if !won { // another click, here or in another process, got there first
		cur, _, err := s.get(ctx, id)
		return cur, false, err
	}
	return a, true, nil
}

func (s *storedRequests) update(ctx context.Context, id string, change func(*Approval)) error {
	for range 5 { // a concurrent transition may change the state under us: retry on the new one
		a, ok, err := s.get(ctx, id)
		if err != nil || !ok {
			return err
		}
		change(&a)
		doc, err := encodeApproval(a)
		if err != nil {
			return err
		}
		n, _ := requestID(id)
		if won, err := s.store.Transition(ctx, n, string(a.State), string(a.State), doc); err != nil || won {
			return err
		}
	}
	return fmt.Errorf("request %s: too many concurrent changes", id)
}

func (s *storedRequests) endedBy(ctx context.Context, id pg.Identity) (Approval, bool) {
	rs, err := s.store.RequestsByDedup(ctx, []string{dedupKey(pg.Cancel, id), dedupKey(pg.Terminate, id)}, string(Done))
	if err != nil {
		return Approval{}, false
	}
	for _, r := range rs {
		if a, err := decodeApproval(r); err == nil && signalled(a, id) {
			return a, true
		}
	}
	return Approval{}, false
}

func (s *storedRequests) pending(ctx context.Context) ([]Approval, error) {
	rs, err := s.store.RequestsIn(ctx, string(Pending))
	if err != nil {
		return nil, err
	}
	var out []Approval
	for _, r := range rs {
		if a, err := decodeApproval(r); err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}
