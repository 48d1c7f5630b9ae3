package redact

import (
	"fmt"
	"strings"
)

// Mode says how much query text pgkill shows (PGKILL_REDACT).
type Mode int

const (
	// Literals hides literals and comments (SQL). The default.
	Literals Mode = iota
	// None shows query text as the server reports it.
	None
)

// ParseMode reads a PGKILL_REDACT value: "literals" or "none", in any case;
// empty means literals. Its error names the allowed values and reads after
// the setting's name ("PGKILL_REDACT must be …"); with it comes Literals,
// which hides more.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "literals":
		return Literals, nil
	case "none":
		return None, nil
	}
	return Literals, fmt.Errorf("must be literals (hide literals and comments, the default) or none (show query text as is), not %q", s)
}

// String is the setting's value.
func (m Mode) String() string {
	if m == None {
		return "none"
	}
	return "literals"
}

// Show is query as this mode shows it, and the fingerprint of query itself
// (a fleet.Show).
func (m Mode) Show(query string) (shown, fingerprint string) {
	return m.Apply(query), Fingerprint(query)
}

// Apply returns query as this mode shows it.
func (m Mode) Apply(query string) string {
	if m == None {
		return query
	}
	return SQL(query)
}
