package cli

import (
	"encoding/json"
	"io"

	"github.com/pgkill/pgkill/pg"
)

// writeJSON prints a listing for scripts: every target with its error and
// hidden count, then the backends in the table's order. Strings are JSON
// escaped, so control characters arrive as \u escapes. Each backend's
// blocked_by names only the sessions it waits for directly, so the
// document grows with the sessions, not with their square.
func writeJSON(w io.Writer, ls []pg.Listing, bs []pg.Backend) error {
	type jsonTarget struct {
		Target string `json:"target"`
		Error  string `json:"error,omitempty"`
		Hidden int    `json:"hidden_sessions"`
		NoTree string `json:"no_blocking_tree,omitempty"`
		// Degraded: the lock table was busy; a second document follows
		// when the tree comes.
		Degraded  bool `json:"lock_table_busy,omitempty"`
		LockWaits int  `json:"lock_waits"`
	}
	type jsonBackend struct {
		pg.Backend
		DurationSeconds float64  `json:"duration_seconds"`
		XactAgeSeconds  *float64 `json:"xact_age_seconds,omitempty"`
		RootBlocker     bool     `json:"root_blocker"`
	}
	out := struct {
		Targets  []jsonTarget  `json:"targets"`
		Backends []jsonBackend `json:"backends"`
	}{Targets: []jsonTarget{}, Backends: []jsonBackend{}}
	for _, l := range ls {
		t := jsonTarget{Target: l.Target, Hidden: l.Hidden, NoTree: l.NoTree, Degraded: l.Degraded, LockWaits: l.LockWaits}
		if l.Err != nil {
			t.Error = pg.Redact(l.Err.Error())
		}
		out.Targets = append(out.Targets, t)
	}
	for _, b := range bs {
		jb := jsonBackend{Backend: b, DurationSeconds: b.Duration.Seconds(), RootBlocker: b.RootBlocker()}
		if !b.XactStart.IsZero() {
			age := b.XactAge.Seconds()
			jb.XactAgeSeconds = &age
		}
		out.Backends = append(out.Backends, jb)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
