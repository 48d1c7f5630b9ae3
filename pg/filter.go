package pg

import (
	"fmt"
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

// States accepted by Filter.State.
var FilterStates = []string{"active", "idle-in-transaction", "all"}

// ParseFilterState checks a user-supplied state filter.
func ParseFilterState(s string) (string, error) {
	switch s {
	case "", "all":
		return "all", nil
	case "active", "idle-in-transaction":
		return s, nil
	case "idle", "idle_in_transaction", "idle in transaction":
		return "idle-in-transaction", nil
	}
	return "", fmt.Errorf("state must be active, idle-in-transaction or all, not %q", s)
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
