package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
	// Update writes a new state and doc if the request is still at version;
	// false, changing nothing, when another change got there first.
	Update(ctx context.Context, id, version int64, state string, doc []byte) (bool, error)
	RequestsByDedup(ctx context.Context, dedups []string, state string) ([]pg.StoredRequest, error)
	RequestsIn(ctx context.Context, state string) ([]pg.StoredRequest, error)
	// RequestsWithMember returns the bulk requests in state with that member.
	RequestsWithMember(ctx context.Context, target string, pid int32, state string) ([]pg.StoredRequest, error)
	// StaleRequests returns those in state unchanged for age, by the store's clock.
	StaleRequests(ctx context.Context, state string, age time.Duration) ([]pg.StoredRequest, error)
	PruneRequests(ctx context.Context, before time.Time) error
	// PutSet stores a frozen set of backends; Set reads it (false: pruned).
	PutSet(ctx context.Context, doc []byte) (int64, error)
	Set(ctx context.Context, id int64) ([]byte, bool, error)
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

// dedup names what a request acts on: one action on one statement
// execution, or on one frozen set.
func (a Approval) dedup() string {
	if a.bulk() {
		return bulkDedup(a.Action, a.Members)
	}
	return dedupKey(a.Action, a.Backend.Identity)
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
	r, created, err := s.store.AddRequest(ctx, a.dedup(), doc)
	if err != nil {
		return a, false, err
	}
	got, err := decodeApproval(r)
	return got, created, err
}

func (s *storedRequests) get(ctx context.Context, id string) (Approval, bool, error) {
	a, _, ok, err := s.read(ctx, id)
	return a, ok, err
}

// read returns request id with the version to compare and set on.
func (s *storedRequests) read(ctx context.Context, id string) (Approval, int64, bool, error) {
	n, ok := requestID(id)
	if !ok {
		return Approval{}, 0, false, nil
	}
	r, err := s.store.Request(ctx, n)
	if err != nil {
		if errors.Is(err, pg.ErrNotFound) {
			return Approval{}, 0, false, nil
		}
		return Approval{}, 0, false, err
	}
	a, err := decodeApproval(r)
	return a, r.Version, err == nil, err
}

// maxConflicts bounds how often one change is retried on a newer version:
// each retry means another change landed, so this is never reached in
// practice.
const maxConflicts = 20

// change applies fn to the latest version of request id and writes it back
// compared and set on that version, re-reading after every conflict, so a
// concurrent change is never overwritten. fn reports whether to write.
func (s *storedRequests) change(ctx context.Context, id string, fn func(*Approval) (bool, error)) (Approval, bool, error) {
	n, _ := requestID(id)
	for range maxConflicts {
		a, version, ok, err := s.read(ctx, id)
		if err != nil || !ok {
			return a, false, err
		}
		cur := a
		write, err := fn(&a)
		if err != nil || !write {
			return cur, false, err
		}
		doc, err := encodeApproval(a)
		if err != nil {
			return cur, false, err
		}
		won, err := s.store.Update(ctx, n, version, string(a.State), doc)
		if err != nil && s.landed(ctx, n, version, doc) {
			won, err = true, nil // the write committed; only its reply was lost
		}
		if err != nil {
			return cur, false, err
		}
		if won {
			return a, true, nil
		}
	}
	return Approval{}, false, fmt.Errorf("request %s: too many concurrent changes", id)
}

func (s *storedRequests) apply(ctx context.Context, id string, fn func(*Approval) (bool, error)) (Approval, bool, error) {
	return s.change(ctx, id, fn)
}

// landed reports whether a write whose reply was lost (the connection
// dropped after COMMIT) committed after all: the row is at the next
// version and holds exactly the document written.
func (s *storedRequests) landed(ctx context.Context, id, version int64, doc []byte) bool {
	r, err := s.store.Request(ctx, id)
	if err != nil || r.Version != version+1 {
		return false
	}
	var want, got any
	return json.Unmarshal(doc, &want) == nil && json.Unmarshal(r.Doc, &got) == nil && reflect.DeepEqual(want, got)
}

func (s *storedRequests) transition(ctx context.Context, id string, from, to State, change func(*Approval) error) (Approval, bool, error) {
	return s.change(ctx, id, func(a *Approval) (bool, error) {
		if a.State != from { // another click, here or in another process, got there first
			return false, nil
		}
		a.State = to
		if change != nil {
			if err := change(a); err != nil {
				return false, err
			}
		}
		return true, nil
	})
}

func (s *storedRequests) update(ctx context.Context, id string, change func(*Approval)) error {
	_, _, err := s.change(ctx, id, func(a *Approval) (bool, error) {
		state := a.State
		change(a)
		a.State = state // the state moves only through transition
		return true, nil
	})
	return err
}

func (s *storedRequests) endedBy(ctx context.Context, id pg.Identity) (Approval, bool) {
	// A single request is keyed by its identity; a bulk one by its whole
	// set, so it is found by its member.
	single, err := s.store.RequestsByDedup(ctx, []string{dedupKey(pg.Cancel, id), dedupKey(pg.Terminate, id)}, string(Done))
	if err != nil {
		return Approval{}, false
	}
	bulk, err := s.store.RequestsWithMember(ctx, id.Target, id.PID, string(Done))
	if err != nil {
		return Approval{}, false
	}
	for _, a := range decodeAll(append(single, bulk...)) {
		if signalled(a, id) {
			return a, true
		}
	}
	return Approval{}, false
}

func (s *storedRequests) abandoned(ctx context.Context, age time.Duration) ([]Approval, error) {
	rs, err := s.store.StaleRequests(ctx, string(Approved), age)
	return decodeAll(rs), err
}

func (s *storedRequests) inState(ctx context.Context, state State) ([]Approval, error) {
	rs, err := s.store.RequestsIn(ctx, string(state))
	return decodeAll(rs), err
}

// decodeAll decodes stored requests, skipping any it cannot read.
func decodeAll(rs []pg.StoredRequest) []Approval {
	var out []Approval
	for _, r := range rs {
		if a, err := decodeApproval(r); err == nil {
			out = append(out, a)
		}
	}
	return out
}
