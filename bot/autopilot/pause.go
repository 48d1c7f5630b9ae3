package autopilot

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// Pauses keeps what stops the autopilot, shared by every replica through
// the state store (or in this process without one): a person's pause of
// every target or one, and a rule's breaker on a target.
type Pauses interface {
	// Pause records a pause of scope; false when one is recorded already.
	Pause(ctx context.Context, scope, reason, by string) (bool, error)
	// Resume ends it; false when there was none.
	Resume(ctx context.Context, scope string) (bool, error)
	// All returns every pause.
	All(ctx context.Context) ([]pg.PauseRow, error)
}

// Scopes of a pause.
const All = "*"

// TargetScope pauses every rule on target.
func TargetScope(target string) string { return "target:" + target }

// BreakerScope is a rule's breaker on target.
func BreakerScope(rule, target string) string { return "breaker:" + rule + ":" + target }

// Stopped says what stops rule on target, if anything: the pause or
// breaker in force, or false.
func Stopped(ps []pg.PauseRow, rule, target string) (pg.PauseRow, bool) {
	for _, scope := range []string{All, TargetScope(target), BreakerScope(rule, target)} {
		if i := slices.IndexFunc(ps, func(p pg.PauseRow) bool { return p.Scope == scope }); i >= 0 {
			return ps[i], true
		}
	}
	return pg.PauseRow{}, false
}

// IsBreaker reports whether a pause is a rule's breaker.
func IsBreaker(p pg.PauseRow) bool { return strings.HasPrefix(p.Scope, "breaker:") }

// MemoryPauses keeps pauses in this process.
func MemoryPauses() Pauses { return &memPauses{} }

type memPauses struct {
	mu sync.Mutex
	ps []pg.PauseRow
}

func (m *memPauses) Pause(_ context.Context, scope, reason, by string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.ContainsFunc(m.ps, func(p pg.PauseRow) bool { return p.Scope == scope }) {
		return false, nil
	}
	m.ps = append(m.ps, pg.PauseRow{Scope: scope, Reason: reason, By: by, At: time.Now()})
	return true, nil
}

func (m *memPauses) Resume(_ context.Context, scope string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.ps)
	m.ps = slices.DeleteFunc(m.ps, func(p pg.PauseRow) bool { return p.Scope == scope })
	return len(m.ps) < n, nil
}

func (m *memPauses) All(context.Context) ([]pg.PauseRow, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ps), nil
}

// PauseRecords is where StoredPauses keeps pauses (*pg.Store).
type PauseRecords interface {
	PutPause(ctx context.Context, scope, reason, by string) (bool, error)
	DeletePause(ctx context.Context, scope string) (bool, error)
	Pauses(ctx context.Context) ([]pg.PauseRow, error)
}

// StoredPauses keeps pauses in the state store: they hold across replicas
// and restarts.
func StoredPauses(r PauseRecords) Pauses { return storedPauses{r} }

type storedPauses struct{ r PauseRecords }

func (s storedPauses) Pause(ctx context.Context, scope, reason, by string) (bool, error) {
	return s.r.PutPause(ctx, scope, reason, by)
}
func (s storedPauses) Resume(ctx context.Context, scope string) (bool, error) {
	return s.r.DeletePause(ctx, scope)
}
func (s storedPauses) All(ctx context.Context) ([]pg.PauseRow, error) { return s.r.Pauses(ctx) }
