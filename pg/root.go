package pg

import (
	"cmp"
	"slices"
)

// likelyRoot is the session a rule that needs no lock table takes for the
// root blocker while sessions wait on locks: of the client sessions in a
// transaction that wait on no lock themselves, one idle in its transaction
// comes before one running a statement, one holding a transaction ID (it
// changed or locked rows) before one that holds none, then the oldest
// transaction first. In a pile-up on one row it named the holder every
// time; it is a guess all the same: it can name an old transaction that
// blocks nobody, and miss a root that another rule would find (a session
// holding locks from statements long finished while a younger one waits).
// ok is false when no session waits on a heavyweight lock, or none fits.
func likelyRoot(a activity) (pid int32, ok bool) {
	var best *session
	waiting := false
	for i := range a.sessions {
		s := &a.sessions[i]
		if s.WaitEventType == "Lock" {
			waiting = true
		}
		if s.noIdentity || s.BackendType != "client backend" || (s.leader != nil && *s.leader != s.PID) ||
			s.XactStart.IsZero() || s.lockWait() {
			continue
		}
		if best == nil || rootOrder(s, best) < 0 {
			best = s
		}
	}
	if !waiting || best == nil {
		return 0, false
	}
	return best.PID, true
}

// rootOrder orders candidates for likelyRoot: the likelier first.
func rootOrder(a, b *session) int {
	if c := cmpBool(a.State.Idle(), b.State.Idle()); c != 0 {
		return c
	}
	if c := cmpBool(a.xid, b.xid); c != 0 {
		return c
	}
	if c := a.XactStart.Compare(b.XactStart); c != 0 {
		return c
	}
	return cmp.Compare(a.PID, b.PID)
}

// cmpBool orders true first.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// markLikelyRoot marks the likely root blocker among l's sessions.
func markLikelyRoot(l *Listing, a activity) {
	pid, ok := likelyRoot(a)
	if !ok {
		return
	}
	for i := range l.Backends {
		if l.Backends[i].PID == pid {
			l.Backends[i].LikelyRoot = true
		}
	}
}

// queueOf lists what a blocker's direct waiters want, most sessions first.
func queueOf(m map[Lock]int) []LockQueue {
	if len(m) == 0 {
		return nil
	}
	out := make([]LockQueue, 0, len(m))
	for lk, n := range m {
		out = append(out, LockQueue{Lock: lk, Sessions: n})
	}
	slices.SortFunc(out, func(a, b LockQueue) int {
		if c := cmp.Compare(b.Sessions, a.Sessions); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.Relation, b.Relation), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Mode, b.Mode),
			cmp.Compare(a.RelationOID, b.RelationOID), cmp.Compare(a.Database, b.Database))
	})
	return out
}
