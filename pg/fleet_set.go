package pg

import (
	"fmt"
	"slices"
)

// FleetChange says what Set did, by target name.
type FleetChange struct {
	Added   []string // new targets
	Removed []string // targets gone: their pools are closed
	// Replaced targets kept their name but connect differently (DSN or
	// login): a new pool took the old one's place.
	Replaced []string
	// Relabelled targets kept their pool; their role or origin changed (an
	// Aurora failover swaps writer and reader).
	Relabelled []string
}

// Empty reports whether Set changed nothing.
func (c FleetChange) Empty() bool {
	return len(c.Added)+len(c.Removed)+len(c.Replaced)+len(c.Relabelled) == 0
}

func (c FleetChange) String() string {
	if c.Empty() {
		return "no change"
	}
	s := ""
	for _, p := range []struct {
		what  string
		names []string
	}{{"added", c.Added}, {"removed", c.Removed}, {"replaced", c.Replaced}, {"relabelled", c.Relabelled}} {
		if len(p.names) > 0 {
			if s != "" {
				s += "; "
			}
			s += fmt.Sprintf("%s %v", p.what, p.names)
		}
	}
	return s
}

// Set makes the fleet exactly specs, in their order. A target whose spec
// connects as before keeps its pool (and its open sessions); the others get
// new pools, and the pools of removed or replaced targets are closed once
// their running operations end. On error (a name used twice, an invalid
// DSN) the fleet is left as it was.
func (f *Fleet) Set(specs []TargetSpec) (FleetChange, error) {
	f.setMu.Lock()
	defer f.setMu.Unlock()
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		if seen[s.Name] {
			return FleetChange{}, fmt.Errorf("target name %q is used twice", s.Name)
		}
		seen[s.Name] = true
	}

	f.mu.RLock()
	old := make(map[string]*member, len(f.targets))
	for _, m := range f.targets {
		old[m.spec.Name] = m
	}
	f.mu.RUnlock()

	// New pools are made outside the lock (NewTarget does not connect, but
	// the lock is no place for anything that might be slow).
	var ch FleetChange
	next := make([]*member, 0, len(specs))
	var made []*Target
	for _, s := range specs {
		m, ok := old[s.Name]
		if ok && sameConnection(m.spec, s) {
			if m.spec.Role != s.Role || m.spec.Origin != s.Origin {
				ch.Relabelled = append(ch.Relabelled, s.Name)
			}
			next = append(next, &member{spec: s, target: m.target})
			continue
		}
		t, err := NewTarget(s, f.opts)
		if err != nil {
			for _, t := range made {
				t.Close()
			}
			return FleetChange{}, err
		}
		made = append(made, t)
		next = append(next, &member{spec: s, target: t})
		if ok {
			ch.Replaced = append(ch.Replaced, s.Name)
		} else {
			ch.Added = append(ch.Added, s.Name)
		}
	}

	f.mu.Lock()
	var closing []*Target
	for _, m := range f.targets {
		if !slices.ContainsFunc(next, func(n *member) bool { return n.target == m.target }) {
			closing = append(closing, m.target)
			if !seen[m.spec.Name] {
				ch.Removed = append(ch.Removed, m.spec.Name)
			}
		}
	}
	f.targets = next
	f.mu.Unlock()

	for _, t := range closing {
		t.Close() // waits for operations holding a connection
	}
	return ch, nil
}

// sameConnection reports whether two specs connect identically, so the pool
// can stay.
func sameConnection(a, b TargetSpec) bool {
	if a.DSN != b.DSN || (a.Auth == nil) != (b.Auth == nil) {
		return false
	}
	return a.Auth == nil || a.Auth.String() == b.Auth.String()
}
