package pg

import (
	"slices"
	"testing"
	"time"
)

// lockEdges sees a waiter by its ungranted pg_locks row alone: a session
// running the deadlock check shows wait_event_type LWLock, and its edges
// must not be missed (nothing here looks at wait events).
func TestLockEdges(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) *time.Time { x := t0.Add(time.Duration(s) * time.Second); return &x }
	m := lockModes
	locks := []lockRow{
		// DDL queue: 1 reads, 2 wants ACCESS EXCLUSIVE, 3 reads behind 2, 4 arrived last (no waitstart yet).
		{obj: "rel", pid: 1, mode: m["AccessShareLock"], granted: true},
		{obj: "rel", pid: 2, mode: m["AccessExclusiveLock"], since: at(1)},
		{obj: "rel", pid: 3, mode: m["AccessShareLock"], since: at(2)},
		{obj: "rel", pid: 4, mode: m["RowExclusiveLock"]},
		// A parallel worker (11, leader 10) waits for a lock its own leader holds: no edge.
		{obj: "rel2", pid: 10, mode: m["AccessExclusiveLock"], granted: true},
		{obj: "rel2", pid: 11, mode: m["AccessShareLock"], since: at(1)},
		// Another session waits on rel2 too: blocked by the leader (the worker's request ahead does not conflict).
		{obj: "rel2", pid: 12, mode: m["AccessShareLock"], since: at(2)},
		// A prepared transaction (pid 0) holds a row's transaction lock.
		{obj: "xid", pid: 0, mode: m["ExclusiveLock"], granted: true},
		{obj: "xid", pid: 5, mode: m["ShareLock"], since: at(1)},
		// Compatible modes never block.
		{obj: "rel3", pid: 6, mode: m["RowExclusiveLock"], granted: true},
		{obj: "rel3", pid: 7, mode: m["ShareLock"], since: at(1)},
		{obj: "rel3", pid: 8, mode: m["RowShareLock"], since: at(2)},
	}
	got := lockEdges(locks, map[int32]int32{11: 10})
	want := map[int32][]int32{
		2:  {1},
		3:  {2}, // soft: AccessShare conflicts with no holder, only with 2 queued ahead
		4:  {2}, // RowExclusive conflicts with 2's AccessExclusive, not with AccessShare (1, 3)
		12: {10},
		5:  {0},
		7:  {6},
	}
	if len(got) != len(want) {
		t.Errorf("edges %v, want %v", got, want)
	}
	for w, bs := range want {
		g := slices.Clone(got[w])
		slices.Sort(g)
		if !slices.Equal(slices.Compact(g), bs) {
			t.Errorf("%d blocked by %v, want %v", w, got[w], bs)
		}
	}
}

func TestConflicts(t *testing.T) {
	m := lockModes
	tests := []struct {
		a, b string
		want bool
	}{
		{"AccessShareLock", "AccessExclusiveLock", true},
		{"AccessShareLock", "ExclusiveLock", false},
		{"RowExclusiveLock", "RowExclusiveLock", false},
		{"RowExclusiveLock", "ShareLock", true},
		{"ShareUpdateExclusiveLock", "ShareUpdateExclusiveLock", true},
		{"ShareLock", "ShareLock", false},
		{"ExclusiveLock", "RowShareLock", true},
		{"ShareLock", "ExclusiveLock", true},
	}
	for _, tc := range tests {
		if conflicts(m[tc.a], m[tc.b]) != tc.want || conflicts(m[tc.b], m[tc.a]) != tc.want {
			t.Errorf("%s vs %s: want %v", tc.a, tc.b, tc.want)
		}
	}
}
