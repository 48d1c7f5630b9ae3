package pg

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg/match"
)

// Filter narrows a listing. Empty fields match everything.
//
// Database, User and Application are shell patterns, matched by pg/match
// exactly as protection rules are: * matches any run of characters except
// '/', ? one character, [a-z] a class ("app_*", "report?", "[ab]*"); a
// pattern without those characters matches only that exact name. They are
// matched in Go on the rows read, never spliced into SQL.
type Filter struct {
	MinDuration time.Duration
	Database    string // shell pattern
	User        string // shell pattern
	Application string // shell pattern
	State       string // "active", "idle-in-transaction" or "" / "all"
	PID         int32  // one pid, whatever its duration
	// QueryMax is how many characters of each query's text are read: the
	// rest never leaves the server, so 1,000 sessions with 64 kB queries
	// cost what 1,000 short ones do. 0 or negative reads the whole text (as
	// the CLI's -wide needs); DefaultQueryMax is what a message can show.
	QueryMax int
}

// DefaultQueryMax is the query text a Slack message or a table line can
// show (Block Kit sections hold 3,000 characters).
const DefaultQueryMax = 2000

// FilterState is a value Filter.State takes, with what it includes and
// the other spellings that mean the same.
type FilterState struct {
	Name     string
	Includes string
	Aliases  []string
}

// FilterStates are the states a listing can be narrowed to. Plain idle
// sessions (no transaction open) are never listed: there is nothing to end,
// so "idle" can only mean idle in a transaction.
var FilterStates = []FilterState{
	{Name: "active", Includes: "sessions running a statement now"},
	{Name: "idle-in-transaction", Includes: "sessions waiting for their client inside an open transaction, aborted ones included",
		Aliases: []string{"idle", "idle_in_transaction", "idle in transaction"}},
	{Name: "all", Includes: "both of the above (the default; plain idle sessions are never listed)"},
}

// ParseFilterState reads a state filter as a person typed it (Slack's
// state=, the command line's -state): "" is all. It is the only parser of
// it; the error names every state and what it includes.
func ParseFilterState(s string) (string, error) {
	if s == "" {
		return "all", nil
	}
	for _, st := range FilterStates {
		if s == st.Name || slices.Contains(st.Aliases, s) {
			return st.Name, nil
		}
	}
	return "", fmt.Errorf("state must be one of %s; not %q", FilterStateHelp(), s)
}

// FilterStateHelp says each state and what it includes, for help texts.
func FilterStateHelp() string {
	var parts []string
	for _, st := range FilterStates {
		p := st.Name
		if len(st.Aliases) > 0 {
			p += " (or " + st.Aliases[0] + ")"
		}
		parts = append(parts, p+": "+st.Includes)
	}
	return strings.Join(parts, "; ")
}

// Check reports whether f's patterns and state are usable, with an error
// that names the field and says what is allowed: callers parsing user input
// check it up front, List checks it again.
func (f Filter) Check() error {
	_, err := f.check()
	return err
}

// check validates f's patterns and state, returning the normalised state.
func (f Filter) check() (string, error) {
	for _, p := range []struct{ name, pattern string }{
		{"database", f.Database}, {"user", f.User}, {"application", f.Application},
	} {
		if p.pattern == "" {
			continue
		}
		if err := match.CheckPattern(p.pattern); err != nil {
			return "", fmt.Errorf("%s filter: %w", p.name, err)
		}
	}
	return ParseFilterState(f.State)
}

// matches applies the name patterns to one session.
func (f Filter) matches(database, user, app string) bool {
	return match.Pattern(f.Database, database) && match.Pattern(f.User, user) && match.Pattern(f.Application, app)
}
