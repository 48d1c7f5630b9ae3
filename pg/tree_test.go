package pg

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestBuildTree(t *testing.T) {
	queue := map[int32][]int32{} // 1 holds the row; 2..101 queue behind it
	for w := int32(2); w <= 101; w++ {
		for b := int32(1); b < w; b++ {
			queue[w] = append(queue[w], b)
		}
	}
	tests := []struct {
		name          string
		edges         map[int32][]int32
		leader        map[int32]int32
		direct, total map[int32]int
	}{
		{"chain", map[int32][]int32{2: {1}, 3: {2}}, nil,
			map[int32]int{1: 1, 2: 1}, map[int32]int{1: 2, 2: 1}},
		{"fan out", map[int32][]int32{2: {1}, 3: {1}, 4: {3}}, nil,
			map[int32]int{1: 2, 3: 1}, map[int32]int{1: 3, 3: 1}},
		{"diamond counts each waiter once", map[int32][]int32{2: {1}, 3: {1}, 4: {2, 3}}, nil,
			map[int32]int{1: 2, 2: 1, 3: 1}, map[int32]int{1: 3, 2: 1, 3: 1}},
		{"deadlock cycle", map[int32][]int32{1: {2}, 2: {1}, 3: {1}}, nil,
			map[int32]int{1: 2, 2: 1}, map[int32]int{1: 2, 2: 2}},
		{"prepared transaction", map[int32][]int32{5: {0}, 6: {5}}, nil,
			map[int32]int{0: 1, 5: 1}, map[int32]int{0: 2, 5: 1}},
		{"worker waits for its leader's blocker", map[int32][]int32{20: {1}, 21: {1}, 3: {10}}, map[int32]int32{20: 10, 21: 10},
			map[int32]int{1: 1, 10: 1}, map[int32]int{1: 2, 10: 1}},
		{"queue on one row", queue, nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := buildTree(tc.edges, tc.leader, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "queue on one row" {
				// Each waits directly for the one ahead: linear, not N²/2.
				if tr.direct[1] != 1 || tr.total[1] != 100 || tr.total[2] != 99 || tr.total[101] != 0 || tr.direct[100] != 1 ||
					!slices.Equal(tr.blockedBy[101], []int32{100}) {
					t.Errorf("direct[1]=%d total[1]=%d total[2]=%d total[101]=%d direct[100]=%d",
						tr.direct[1], tr.total[1], tr.total[2], tr.total[101], tr.direct[100])
				}
				return
			}
			if !equalCounts(tr.direct, tc.direct) || !equalCounts(tr.total, tc.total) {
				t.Errorf("direct %v total %v; want %v %v", tr.direct, tr.total, tc.direct, tc.total)
			}
		})
	}
}

func TestBuildTreeBudget(t *testing.T) {
	_, err := buildTree(map[int32][]int32{2: {1}}, nil, -time.Second)
	if !errors.Is(err, errTreeBudget) {
		t.Errorf("err = %v, want the budget error", err)
	}
}

func equalCounts(a, b map[int32]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// BenchmarkBuildTree is the Go half of a pile-up: n sessions queued on one
// row, each naming all those ahead of it (n²/2 edges).
func BenchmarkBuildTree(b *testing.B) {
	for _, n := range []int{100, 1000, 2000} {
		edges := map[int32][]int32{}
		for w := int32(2); w <= int32(n)+1; w++ {
			for bl := int32(1); bl < w; bl++ {
				edges[w] = append(edges[w], bl)
			}
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := buildTree(edges, nil, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Lock waits that could not all be read within the budget: the sessions
// are still listed, without blocking counts, and NoTree says why.
func TestAddTreeIncomplete(t *testing.T) {
	tg := &Target{cat: &catalog{}}
	l := &Listing{Backends: []Backend{{Identity: Identity{PID: 1}}, {Identity: Identity{PID: 2}}}}
	tg.addTree(l, lockRead{pids: map[int32][]int32{2: {1}}}, nil, time.Second)
	if l.NoTree == "" || len(l.Backends) != 2 || l.Backends[0].Blocking != 0 || l.Backends[1].BlockedBy != nil {
		t.Errorf("listing = %+v", l)
	}
	l = &Listing{Backends: []Backend{{Identity: Identity{PID: 1}}, {Identity: Identity{PID: 2}}}}
	tg.addTree(l, lockRead{pids: map[int32][]int32{2: {1}}, complete: true}, nil, time.Second)
	if l.NoTree != "" || l.Backends[0].Blocking != 1 || l.Backends[0].BlockingTotal != 1 || !l.Backends[0].RootBlocker() {
		t.Errorf("listing = %+v", l)
	}
}
