package cli

import (
	"encoding/json"
	"io"

	"github.com/pgkill/pgkill/pg"
)

// writeJSON prints a listing for scripts: every target with its error and
// hidden count, then the backends in the table's order. Strings are JSON
// escaped, so control characters arrive as \u escapes.
func writeJSON(w io.Writer, ls []pg.Listing, bs []pg.Backend) error {
	type jsonTarget struct {
		Target string `json:"target"`
		Error  string `json:"error,omitempty"`
		Hidden int    `json:"hidden_sessions"`
		NoTree string `json:"no_blocking_tree,omitempty"`
	}
	type jsonBackend struct {
		pg.Backend
		DurationSeconds float64 `json:"duration_seconds"`
		RootBlocker     bool    `json:"root_blocker"`
	}
	out := struct {
		Targets  []jsonTarget  `json:"targets"`
		Backends []jsonBackend `json:"backends"`
	}{Targets: []jsonTarget{}, Backends: []jsonBackend{}}
	for _, l := range ls {
		t := jsonTarget{Target: l.Target, Hidden: l.Hidden, NoTree: l.NoTree}
		if l.Err != nil {
			t.Error = pg.Redact(l.Err.Error())
		}
		out.Targets = append(out.Targets, t)
	}
	for _, b := range bs {
		out.Backends = append(out.Backends, jsonBackend{Backend: b, DurationSeconds: b.Duration.Seconds(), RootBlocker: b.RootBlocker()})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
