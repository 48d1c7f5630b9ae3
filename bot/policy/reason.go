package policy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/pgkill/pgkill/pg/match"
)

// Reasons says when a requester is asked why (PGKILL_REASON).
type Reasons struct {
	Off      bool            // never asked
	Required map[string]bool // kinds whose reason may not be left empty
}

// Ask says whether a request of kinds (KindsOf) asks for a reason, and
// whether one must be given: required when any of its kinds requires one.
func (r Reasons) Ask(kinds ...string) (ask, required bool) {
	if r.Off {
		return false, false
	}
	for _, k := range kinds {
		required = required || r.Required[k]
	}
	return true, required
}

// ParseReason reads PGKILL_REASON: off, optional (the default, also for
// ""), required, or the kinds for which a reason is required
// ("terminate,bulk"; optional for the others).
func ParseReason(s string) (Reasons, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "optional":
		return Reasons{}, nil
	case "off":
		return Reasons{Off: true}, nil
	case "required":
		return Reasons{Required: map[string]bool{Cancel: true, Terminate: true, Bulk: true}}, nil
	}
	r := Reasons{Required: map[string]bool{}}
	for _, k := range match.List(strings.ToLower(s)) {
		if !slices.Contains(Kinds, k) {
			return Reasons{}, fmt.Errorf("%q: write off, optional, required, or the kinds that require one (%s)", s, strings.Join(Kinds, ", "))
		}
		r.Required[k] = true
	}
	return r, nil
}

// MaxReason bounds a reason: a sentence or a link, not an essay.
const MaxReason = 500

// CheckReason says what is wrong with a reason given where one is
// required: it must be a real sentence — at least three words — or a link
// to the incident, not "." or "x".
func CheckReason(reason string) error {
	reason = strings.TrimSpace(reason)
	switch {
	case len([]rune(reason)) > MaxReason:
		return fmt.Errorf("keep it under %d characters: a sentence or an incident link", MaxReason)
	case strings.Contains(reason, "://"):
		return nil
	}
	words := 0
	for _, w := range strings.Fields(reason) {
		if strings.IndexFunc(w, unicode.IsLetter) >= 0 {
			words++
		}
	}
	if words < 3 {
		return fmt.Errorf("say why in a few words (at least three), or paste the incident link")
	}
	return nil
}
