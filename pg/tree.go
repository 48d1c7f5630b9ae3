package pg

import (
	"errors"
	"math/bits"
	"slices"
	"time"
)

// errTreeBudget: the blocking tree took longer than its budget to compute.
var errTreeBudget = errors.New("over budget")

// tree is who blocks whom, computed in Go from pg_blocking_pids() of each
// waiting session (read once): the work is linear in the edges, where the
// same closure in SQL grew with the cube of a lock queue's length.
type tree struct {
	blockedBy map[int32][]int32 // waiter → its blockers, sorted, without duplicates
	direct    map[int32]int     // blocker → sessions waiting on it directly
	total     map[int32]int     // blocker → sessions waiting on it directly or through others
}

// buildTree computes the counts from waiter → blockers edges (pid 0 is a
// prepared transaction). leader maps parallel workers to their leader, so a
// waiting worker counts as its leader. It gives up with errTreeBudget once
// budget has passed.
//
// BlockingTotal is a reachability count: with a queue of N sessions on one
// row each waiter names all those ahead of it, so there are N²/2 edges and
// a per-session walk would cost N³. Instead the strongly connected
// components (a deadlock cycle is one) are visited in reverse topological
// order and each blocker's set of (transitive) waiters is a bitset over
// waiter indexes, the union of its children's sets. A child already in the
// set brought its own set with it, so it is skipped at the cost of one bit
// test: the queue costs O(N²) bit tests, not O(N³).
func buildTree(edges map[int32][]int32, leader map[int32]int32, budget time.Duration) (*tree, error) {
	start := time.Now()
	t := &tree{blockedBy: make(map[int32][]int32, len(edges)), direct: map[int32]int{}, total: map[int32]int{}}
	for w, bs := range edges {
		if l, ok := leader[w]; ok {
			w = l
		}
		list := append(t.blockedBy[w], bs...) // a leader may have several waiting workers
		list = slices.DeleteFunc(list, func(b int32) bool { return b == w })
		slices.Sort(list)
		t.blockedBy[w] = slices.Compact(list)
	}
	// Dense node numbers: the waiters first, so a waiter's number is its
	// bit in the sets, then the blockers that wait on nothing.
	pids := make([]int32, 0, len(t.blockedBy))
	for w := range t.blockedBy {
		pids = append(pids, w)
	}
	slices.Sort(pids)
	waiters := len(pids)
	id := make(map[int32]int, waiters)
	for i, w := range pids {
		id[w] = i
	}
	var children [][]int // blocker → waiters, by node number
	children = make([][]int, waiters)
	for i, w := range pids[:waiters] {
		for _, b := range t.blockedBy[w] {
			n, ok := id[b]
			if !ok {
				n = len(pids)
				id[b] = n
				pids = append(pids, b)
				children = append(children, nil)
			}
			children[n] = append(children[n], i)
		}
	}
	for n, ws := range children {
		if len(ws) > 0 {
			t.direct[pids[n]] = len(ws)
		}
	}
	s := newSCC(children)
	words := (waiters + 63) / 64
	var reach []bitset // by component, in the order Tarjan closes them
	s.done = func(members []int) error {
		if time.Since(start) > budget {
			return errTreeBudget
		}
		c := len(reach)
		var set bitset
		for _, m := range members {
			for _, k := range children[m] {
				if set == nil {
					set = make(bitset, words)
				}
				if set.has(k) {
					continue
				}
				set.set(k)
				if kc := s.comp[k]; kc != c && reach[kc] != nil {
					set.or(reach[kc])
				}
			}
		}
		reach = append(reach, set)
		n := set.count()
		for _, m := range members {
			total := n
			if m < waiters && set != nil && set.has(m) {
				total-- // in a cycle: a session does not block itself
			}
			if total > 0 {
				t.total[pids[m]] = total
			}
		}
		return nil
	}
	for v := range pids {
		if len(children[v]) > 0 && s.index[v] < 0 {
			if err := s.visit(v); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// scc is Tarjan's algorithm over nodes 0..n-1: it calls done for each
// strongly connected component after every component reachable from it.
type scc struct {
	children   [][]int
	index, low []int // index -1: not visited yet
	comp       []int // component number, in closing order
	onStack    []bool
	stack      []int
	next       int
	closed     int
	done       func(members []int) error
}

func newSCC(children [][]int) *scc {
	n := len(children)
	s := &scc{children: children, index: make([]int, n), low: make([]int, n), comp: make([]int, n), onStack: make([]bool, n)}
	for i := range s.index {
		s.index[i] = -1
	}
	return s
}

func (s *scc) visit(v int) error {
	s.index[v], s.low[v] = s.next, s.next
	s.next++
	s.stack = append(s.stack, v)
	s.onStack[v] = true
	for _, w := range s.children[v] {
		if s.index[w] < 0 {
			if err := s.visit(w); err != nil {
				return err
			}
			s.low[v] = min(s.low[v], s.low[w])
		} else if s.onStack[w] {
			s.low[v] = min(s.low[v], s.index[w])
		}
	}
	if s.low[v] != s.index[v] {
		return nil
	}
	var members []int
	for {
		w := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		s.onStack[w] = false
		s.comp[w] = s.closed
		members = append(members, w)
		if w == v {
			break
		}
	}
	s.closed++
	return s.done(members)
}

type bitset []uint64

func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) or(o bitset) {
	for i := range b {
		b[i] |= o[i]
	}
}
func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}
