package request

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// Memory keeps requests in this process (no state store): they are lost on
// restart, and another replica does not know them. Its clock is the
// process's.
func Memory() *Store { return NewStore(MemoryRecords()) }

// MemoryRecords keeps records in this process, on its clock.
func MemoryRecords() Records { return &memRecords{byID: map[int64]*pg.Record{}} }

// memRecords is Records in a map, under one lock.
type memRecords struct {
	mu   sync.Mutex
	seq  int64
	byID map[int64]*pg.Record
}

func (m *memRecords) AddRecord(_ context.Context, r pg.Record, ttl, deadline time.Duration) (pg.Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.byID {
		if o.Open && o.Key == r.Key {
			return *o, false, nil
		}
	}
	now := time.Now()
	m.seq++
	r.ID, r.Open, r.Version, r.Created, r.Expires = m.seq, true, 0, now, now.Add(ttl)
	r.Deadline, r.Decided = time.Time{}, time.Time{}
	if deadline > 0 {
		r.Deadline = now.Add(deadline)
	}
	m.byID[r.ID] = &r
	return r, true, nil
}

func (m *memRecords) OpenRecord(_ context.Context, key string) (pg.Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.byID {
		if o.Open && o.Key == key {
			return *o, true, nil
		}
	}
	return pg.Record{}, false, nil
}

func (m *memRecords) Record(_ context.Context, id int64) (pg.Record, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byID[id]
	if !ok {
		return pg.Record{}, time.Now(), fmt.Errorf("request %d: %w", id, pg.ErrNotFound)
	}
	return *r, time.Now(), nil
}

func (m *memRecords) UpdateRecord(_ context.Context, r pg.Record) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.byID[r.ID]
	if !ok || cur.Version != r.Version || !r.Before.IsZero() && !time.Now().Before(r.Before) {
		return false, nil
	}
	r.Before = time.Time{}
	r.Version++
	r.Key, r.Created, r.Members = cur.Key, cur.Created, cur.Members
	*cur = r
	return true, nil
}

func (m *memRecords) DueRecords(context.Context) ([]pg.Record, time.Time, error) {
	now := time.Now()
	out := m.select_(func(r *pg.Record) bool {
		return r.Open && r.Expires.Before(now) || !r.Deadline.IsZero() && r.Deadline.Before(now)
	})
	return out, now, nil
}

func (m *memRecords) OpenRecords(context.Context) ([]pg.Record, error) {
	return m.select_(func(r *pg.Record) bool { return r.Open }), nil
}

func (m *memRecords) RecordsWith(_ context.Context, member string) ([]pg.Record, error) {
	out := m.select_(func(r *pg.Record) bool { return !r.Open && slices.Contains(r.Members, member) })
	slices.Reverse(out)
	return out, nil
}

func (m *memRecords) PruneRecords(_ context.Context, age time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, r := range m.byID {
		if !r.Open && !r.Decided.IsZero() && time.Since(r.Decided) > age {
			delete(m.byID, id)
		}
	}
	return nil
}

func (m *memRecords) CountRecords(_ context.Context, prefix string, age time.Duration) (int, error) {
	since := time.Now().Add(-age)
	return len(m.select_(func(r *pg.Record) bool { return strings.HasPrefix(r.Key, prefix) && r.Created.After(since) })), nil
}

func (m *memRecords) KeyExists(_ context.Context, key string) (bool, error) {
	return len(m.select_(func(r *pg.Record) bool { return r.Key == key })) > 0, nil
}

// select_ returns the records ok selects, oldest first.
func (m *memRecords) select_(ok func(*pg.Record) bool) []pg.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []pg.Record
	for _, r := range m.byID {
		if ok(r) {
			out = append(out, *r)
		}
	}
	slices.SortFunc(out, func(a, b pg.Record) int { return int(a.ID - b.ID) })
	return out
}
