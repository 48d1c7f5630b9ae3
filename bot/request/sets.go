package request

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// Set is the set of backends a listing (or an alert summary) matched,
// frozen when it was shown, so that its Cancel all / Terminate all act on
// exactly that set — not on what matches when the button is pressed.
type Set struct {
	Scope   string         // the filter that made it, as the user gave it
	Members []pg.Backend   // every signallable backend it matched
	Left    map[string]int // matched but never offered, by why
	At      time.Time
}

// Freeze keeps of a listing what a bulk request may act on: the
// signallable backends, longest first, with their query text cut (a card
// shows a few lines; the identity is what is signalled), and a count of the
// others by why.
func Freeze(ls []pg.Listing, scope string, now time.Time) Set {
	s := Set{Scope: scope, Left: map[string]int{}, At: now}
	for _, b := range pg.Merge(ls) {
		if !b.Signallable() {
			s.Left["not signallable ("+leftReason(b.Protected)+")"]++
			continue
		}
		if r := []rune(b.Query); len(r) > 300 {
			b.Query = string(r[:299]) + "…"
		}
		s.Members = append(s.Members, b)
	}
	return s
}

// leftReason is the short form of why a backend is protected.
func leftReason(protected string) string {
	if i := strings.IndexAny(protected, ":("); i > 0 {
		return strings.TrimSpace(protected[:i])
	}
	return protected
}

// ForAction keeps the members action can act on, and counts the others
// with why: cancel does nothing to a session idle in a transaction.
func (s Set) ForAction(action pg.Action) ([]pg.Backend, map[string]int) {
	left := map[string]int{}
	for k, v := range s.Left {
		left[k] = v
	}
	var out []pg.Backend
	for _, m := range s.Members {
		if action == pg.Cancel && m.State.Idle() {
			left["idle in a transaction (cancel does nothing there)"]++
			continue
		}
		out = append(out, m)
	}
	return out, left
}

// Sets keeps frozen sets: in the state store when there is one (any
// replica may get the click), else in memory. Sets are forgotten after a
// day, with decided requests.
type Sets interface {
	Put(ctx context.Context, s Set) (id string, err error)
	// Get returns set id; false when it is not known (pruned, or kept by a
	// process that has restarted).
	Get(ctx context.Context, id string) (Set, bool, error)
}

// MemorySets keeps sets in this process.
func MemorySets() Sets { return &memSets{m: map[string]Set{}} }

type memSets struct {
	mu  sync.Mutex
	seq int
	m   map[string]Set
}

func (s *memSets) Put(_ context.Context, set Set) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.m {
		if set.At.Sub(old.At) > keepDecided {
			delete(s.m, id)
		}
	}
	s.seq++
	id := "S" + strconv.Itoa(s.seq)
	s.m[id] = set
	return id, nil
}

func (s *memSets) Get(_ context.Context, id string) (Set, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.m[id]
	return set, ok, nil
}

// SetRecords is where StoredSets keeps sets (*pg.Store).
type SetRecords interface {
	PutSet(ctx context.Context, doc []byte) (int64, error)
	Set(ctx context.Context, id int64) ([]byte, bool, error)
}

// StoredSets keeps sets in the state store.
func StoredSets(r SetRecords) Sets { return storedSets{r} }

type storedSets struct{ r SetRecords }

func (s storedSets) Put(ctx context.Context, set Set) (string, error) {
	raw, err := json.Marshal(set)
	if err != nil {
		return "", err
	}
	id, err := s.r.PutSet(ctx, raw)
	return "S" + strconv.FormatInt(id, 10), err
}

func (s storedSets) Get(ctx context.Context, id string) (Set, bool, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "S"), 10, 64)
	if err != nil || !strings.HasPrefix(id, "S") {
		return Set{}, false, nil
	}
	raw, ok, err := s.r.Set(ctx, n)
	if err != nil || !ok {
		return Set{}, false, err
	}
	var set Set
	return set, true, json.Unmarshal(raw, &set)
}
