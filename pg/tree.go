package pg

import (
	"errors"
	"math/bits"
	"slices"
	"time"
)

// errTreeBudget: the blocking tree took longer than its budget to compute.
var errTreeBudget = errors.New("over budget")

// tree is who blocks whom, computed in Go from the lock waits (read once):
// the work is about linear in the edges, where the same closure in SQL grew
// with the cube of a lock queue's length.
type tree struct {
	// blockedBy: waiter → the sessions it waits for directly, sorted: its
	// blockers (pg_blocking_pids) without those it waits for only through
	// another of them. In a queue of N sessions on one row each waits for
	// the one ahead, not for all N-1: listings stay linear in sessions.
	blockedBy map[int32][]int32
	direct    map[int32]int // blocker → sessions whose blockedBy names it
	total     map[int32]int // blocker → sessions waiting on it directly or through others
}

// buildTree computes the tree from waiter → blockers edges as
// pg_blocking_pids() gives them (pid 0 is a prepared transaction). leader
// maps parallel workers to their leader, so a waiting worker counts as its
// leader. It gives up with errTreeBudget once budget has passed.
//
// BlockingTotal is a reachability count: with a queue of N sessions on one
// row each waiter names all those ahead of it, so there are N²/2 edges and
// a per-session walk would cost N³. Instead the strongly connected
// components (a deadlock cycle is one) are visited in reverse topological
// order and each blocker's set of (transitive) waiters is a bitset over
// waiter indexes, the union of its children's sets. A child already in the
// set brought its own set with it, so it is skipped at the cost of one bit
// test: the queue costs O(N²) bit tests, not O(N³). The direct blockers
// are found the other way round, from each component's set of
// (transitive) blockers.
func buildTree(edges map[int32][]int32, leader map[int32]int32, budget time.Duration) (*tree, error) {
	start := time.Now()
	full := make(map[int32][]int32, len(edges))
	for w, bs := range edges {
		if l, ok := leader[w]; ok {
			w = l
		}
		list := append(full[w], bs...) // a leader may have several waiting workers
		list = slices.DeleteFunc(list, func(b int32) bool { return b == w })
		slices.Sort(list)
		full[w] = slices.Compact(list)
	}
	t := &tree{blockedBy: make(map[int32][]int32, len(full)), direct: map[int32]int{}, total: map[int32]int{}}
	// Dense node numbers: the waiters first, so a waiter's number is its
	// bit in the sets, then the blockers that wait on nothing.
	pids := make([]int32, 0, len(full))
	for w := range full {
		pids = append(pids, w)
	}
	slices.Sort(pids)
	waiters := len(pids)
	id := make(map[int32]int, waiters)
	for i, w := range pids {
		id[w] = i
	}
	children := make([][]int, waiters) // blocker → waiters, by node number
	parents := make([][]int, waiters)  // waiter → blockers, by node number
	for i, w := range pids[:waiters] {
		for _, b := range full[w] {
			n, ok := id[b]
			if !ok {
				n = len(pids)
				id[b] = n
				pids = append(pids, b)
				children = append(children, nil)
			}
			children[n] = append(children[n], i)
			parents[i] = append(parents[i], n)
		}
	}
	s := newSCC(children)
	words := (waiters + 63) / 64
	var (
		reach   []bitset // by component, in the order Tarjan closes them
		members [][]int  // by component
	)
	s.done = func(ms []int) error {
		if time.Since(start) > budget {
			return errTreeBudget
		}
		c := len(reach)
		members = append(members, ms)
		var set bitset
		for _, m := range ms {
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
		for _, m := range ms {
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
	if err := t.reduce(pids, parents, s.comp, members, waiters, start, budget); err != nil {
		return nil, err
	}
	return t, nil
}

// reduce keeps, of each waiter's blockers, those it does not wait for only
// through another: the direct ones. A component's blockers are closer to
// it the lower their component number (Tarjan closes a component after
// every component it blocks), so each waiter takes its nearest uncovered
// blocker, then marks that blocker's own (transitive) blockers as covered,
// until none is left. Blockers in the waiter's own component (a deadlock
// cycle) are all kept.
func (t *tree) reduce(pids []int32, parents [][]int, comp []int, members [][]int, waiters int, start time.Time, budget time.Duration) error {
	nodeWords := (len(pids) + 63) / 64
	anc := make([]bitset, len(members)) // component → nodes blocking it, directly or not
	covered := make(bitset, nodeWords)
	var keep []int
	for c := len(members) - 1; c >= 0; c-- { // blockers before their waiters
		if time.Since(start) > budget {
			return errTreeBudget
		}
		set := make(bitset, nodeWords)
		for _, m := range members[c] {
			if m >= waiters {
				continue // waits on nothing
			}
			keep = keep[:0]
			clear(covered)
			for {
				next := -1
				for _, p := range parents[m] {
					if comp[p] == c {
						continue
					}
					if !covered.has(p) && (next < 0 || comp[p] < comp[next]) {
						next = p
					}
				}
				if next < 0 {
					break
				}
				keep = append(keep, next)
				covered.set(next)
				covered.or(anc[comp[next]])
			}
			list := make([]int32, 0, len(keep))
			for _, p := range parents[m] {
				if comp[p] == c || slices.Contains(keep, p) {
					list = append(list, pids[p])
					t.direct[pids[p]]++
				}
			}
			// The kept blockers' own blockers cover the dropped ones.
			for _, p := range keep {
				if !set.has(p) {
					set.set(p)
					set.or(anc[comp[p]])
				}
			}
			slices.Sort(list)
			t.blockedBy[pids[m]] = list
		}
		anc[c] = set
	}
	return nil
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
