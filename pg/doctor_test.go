package pg

import (
	"testing"
	"time"
)

// The pile-up risk is named only when max_connections lets a pile-up of
// pileUpRisk sessions form and deadlock_timeout is short.
func TestDeadlockAdvice(t *testing.T) {
	for _, tc := range []struct {
		maxConns int
		timeout  time.Duration
		advice   bool
	}{
		{100, time.Second, false},
		{499, time.Second, false},
		{500, time.Second, true},
		{5000, 5 * time.Second, true},
		{5000, 10 * time.Second, false},
	} {
		if got := deadlockAdvice(tc.maxConns, tc.timeout) != ""; got != tc.advice {
			t.Errorf("max_connections %d, deadlock_timeout %s: advice %v, want %v", tc.maxConns, tc.timeout, got, tc.advice)
		}
	}
}
