// Package match is pgkill's one parser and matcher of session rules
// (user= and app= shell patterns) and plain lists.
package match

import (
	"fmt"
	"strings"
)

// Rule matches a session whose user matches User and whose application
// matches App. Both are shell patterns (Pattern: *, ?, [a-z]); an empty
// pattern matches anything, but a rule always sets at least one.
type Rule struct {
	User string
	App  string
}

// Match reports whether the session of user with application app matches r.
func (r Rule) Match(user, app string) bool {
	return Pattern(r.User, user) && Pattern(r.App, app)
}

// String is the rule as it is written in a setting: "user=backup app=pg_dump".
func (r Rule) String() string {
	var parts []string
	if r.User != "" {
		parts = append(parts, "user="+r.User)
	}
	if r.App != "" {
		parts = append(parts, "app="+r.App)
	}
	return strings.Join(parts, " ")
}

// AppOnly reports whether r names an application and no user. Any client
// can choose its application_name, so such a rule can be claimed by anyone.
func (r Rule) AppOnly() bool { return r.User == "" && r.App != "" }

// Rules is a list of rules; a session matches when any rule does. Every
// setting that names sessions by user and application_name (PGKILL_PROTECT
// and its shorthands, PGKILL_ALERT_IGNORE and its) is read by Parse into
// Rules, so the listing, the signal (through Regexp) and the alerts never
// disagree about what it means.
type Rules []Rule

// Match returns the first rule that matches the session, if any.
func (rs Rules) Match(user, app string) (Rule, bool) {
	for _, r := range rs {
		if r.Match(user, app) {
			return r, true
		}
	}
	return Rule{}, false
}

// Keys a rule may name.
const (
	User = "user"
	App  = "app"
)

// Parse reads a comma-separated list of rules. Each entry is either
// key=pattern pairs separated by spaces ("user=backup app=pg_dump*") or a
// bare pattern, which means bare=pattern ("rdsadmin" with bare "user").
// Entries and patterns are trimmed; empty entries are skipped. Errors name
// the entry and say what is allowed.
func Parse(s, bare string) (Rules, error) {
	var out Rules
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		r, err := parseRule(entry, bare)
		if err != nil {
			return nil, fmt.Errorf("entry %d %q: %w", i+1, entry, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRule(entry, bare string) (Rule, error) {
	var r Rule
	for _, word := range strings.Fields(entry) {
		key, value, isKV := strings.Cut(word, "=")
		if !isKV {
			if bare == "" || len(strings.Fields(entry)) > 1 {
				return r, fmt.Errorf("write each part as user=PATTERN or app=PATTERN")
			}
			key, value = bare, word
		}
		if err := CheckPattern(value); err != nil {
			return r, err
		}
		switch strings.ToLower(key) {
		case User:
			if r.User != "" {
				return r, fmt.Errorf("user= is given twice")
			}
			r.User = value
		case App, "application":
			if r.App != "" {
				return r, fmt.Errorf("app= is given twice")
			}
			r.App = value
		default:
			return r, fmt.Errorf("unknown key %q (keys: user, app)", key)
		}
	}
	return r, nil
}

// CheckPattern reports whether p is a usable shell pattern.
func CheckPattern(p string) error {
	if p == "" {
		return fmt.Errorf("empty pattern")
	}
	if _, err := parse(p); err != nil {
		return fmt.Errorf("%q is not a valid pattern (use * and ?, or [a-z])", p)
	}
	return nil
}

// Pattern reports whether s matches the shell pattern p (see pattern); an
// empty p matches everything. A malformed pattern matches nothing (Parse
// rejects them).
func Pattern(p, s string) bool {
	if p == "" {
		return true
	}
	pat, err := parse(p)
	return err == nil && pat.match(s)
}

// List splits a comma-separated list of plain values (Slack IDs, names):
// trimmed, empty entries skipped.
func List(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
