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
		for _, b := range bs {
			if b != w {
				t.blockedBy[w] = append(t.blockedBy[w], b)
			}
		}
	}
	// Index the waiters; the graph's edges go blocker → waiter.
	waiters := make([]int32, 0, len(t.blockedBy))
	for w, bs := range t.blockedBy {
		slices.Sort(bs)
		t.blockedBy[w] = slices.Compact(bs)
		waiters = append(waiters, w)
	}
	slices.Sort(waiters)
	index := make(map[int32]int, len(waiters))
	for i, w := range waiters {
		index[w] = i
	}
	children := map[int32][]int32{}
	for _, w := range waiters {
		for _, b := range t.blockedBy[w] {
			children[b] = append(children[b], w)
			t.direct[b]++
		}
	}
	s := scc{children: children, index: map[int32]int{}, low: map[int32]int{}, comp: map[int32]int{}}
	blockers := make([]int32, 0, len(children))
	for b := range children {
		blockers = append(blockers, b)
	}
	slices.Sort(blockers)
	words := (len(waiters) + 63) / 64
	var reach []bitset // by component, in the order Tarjan closes them
	s.done = func(members []int32) error {
		if time.Since(start) > budget {
			return errTreeBudget
		}
		c := len(reach)
		var set bitset
		var kids []int32
		for _, m := range members {
			kids = append(kids, children[m]...)
		}
		if len(kids) > 0 {
			set = make(bitset, words)
			// Largest sets first, so that later children are mostly found
			// already inside and skipped.
			slices.SortFunc(kids, func(a, b int32) int { return t.total[b] - t.total[a] })
			for _, k := range kids {
				i := index[k]
				if set.has(i) {
					continue
				}
				set.set(i)
				if kc := s.comp[k]; kc != c && reach[kc] != nil {
					set.or(reach[kc])
				}
			}
		}
		reach = append(reach, set)
		n := set.count()
		for _, m := range members {
			total := n
			if i, ok := index[m]; ok && set != nil && set.has(i) {
				total-- // in a cycle: a session does not block itself
			}
			if total > 0 {
				t.total[m] = total
			}
		}
		return nil
	}
	for _, b := range blockers {
		if _, seen := s.index[b]; !seen {
			if err := s.visit(b); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// scc is Tarjan's algorithm: it calls done for each strongly connected
// component after every component reachable from it.
type scc struct {
	children   map[int32][]int32
	index, low map[int32]int
	comp       map[int32]int // component number, in closing order
	stack      []int32
	onStack    map[int32]bool
	next       int
	closed     int
	done       func(members []int32) error
}

func (s *scc) visit(v int32) error {
	if s.onStack == nil {
		s.onStack = map[int32]bool{}
	}
	s.index[v], s.low[v] = s.next, s.next
	s.next++
	s.stack = append(s.stack, v)
	s.onStack[v] = true
	for _, w := range s.children[v] {
		if _, seen := s.index[w]; !seen {
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
	var members []int32
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
