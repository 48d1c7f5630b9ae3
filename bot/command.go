package bot

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/pgkill/pgkill/pg"
)

// Command kinds.
const (
	KindList    = "list"
	KindHelp    = "help"
	KindTargets = "targets"
	KindDoctor  = "doctor"
	KindBulk    = "bulk" // cancel or terminate every session a listing's grammar matches
	// KindAutopilot shows the rules (Verb ""), or pauses or resumes them
	// (Verb "pause", "resume"; Targets: one target or none for every
	// target; Rule: resume one rule's breaker on its target).
	KindAutopilot = "autopilot"
)

// Query is a parsed /pgkill command.
type Query struct {
	Kind      string
	Targets   []string // empty: all
	Threshold time.Duration
	Filter    pg.Filter
	Filters   string // the key=value filters as given, for the listing header
	Limit     int
	Args      string    // the normalised arguments, for Refresh
	Action    pg.Action // KindBulk: cancel or terminate
	Reason    string    // KindBulk: reason="…", the rest of the command
	Verb      string    // KindAutopilot: "", "pause" or "resume"
	Rule      string    // KindAutopilot resume: the rule whose breaker to reset
}

// maxCommandText bounds what we parse: a real command is a few words.
const maxCommandText = 500

// ParseCommand reads the text after the slash command. Anything it cannot
// read is an error that says what was wrong; the caller adds the usage line.
func ParseCommand(text string, targets []string, defaultThreshold time.Duration) (Query, error) {
	if len(text) > maxCommandText {
		return Query{}, fmt.Errorf("that command is %d characters long; pgkill reads at most %d", len(text), maxCommandText)
	}
	for _, r := range text {
		if unicode.IsControl(r) && r != '\t' && r != '\n' {
			return Query{}, fmt.Errorf("the command contains a control character (%U)", r)
		}
	}
	words := strings.Fields(text)
	q := Query{Kind: KindList, Threshold: defaultThreshold}
	if len(words) > 0 {
		if a, err := pg.ParseAction(strings.ToLower(words[0])); err == nil {
			return parseBulk(a, text, targets, defaultThreshold)
		}
		switch strings.ToLower(words[0]) {
		case "help", "-h", "--help", "?":
			if len(words) > 1 {
				return Query{}, fmt.Errorf("help takes no arguments")
			}
			return Query{Kind: KindHelp}, nil
		case "targets":
			if len(words) > 1 {
				return Query{}, fmt.Errorf("targets takes no arguments")
			}
			return Query{Kind: KindTargets}, nil
		case "autopilot":
			return parseAutopilot(words[1:], targets)
		case "doctor":
			q := Query{Kind: KindDoctor}
			for _, w := range words[1:] {
				if !slices.Contains(targets, w) {
					return Query{}, unknownWord(w)
				}
				q.Targets = append(q.Targets, w)
			}
			return q, nil
		}
	}
	var filters []string
	sawDuration := false
	for _, w := range words {
		key, value, isKV := strings.Cut(w, "=")
		switch {
		case isKV:
			if value == "" {
				return Query{}, fmt.Errorf("%s= needs a value", key)
			}
			switch strings.ToLower(key) {
			case "db", "database":
				q.Filter.Database = value
			case "user":
				q.Filter.User = value
			case "app", "application":
				q.Filter.Application = value
			case "state":
				st, err := pg.ParseFilterState(value)
				if err != nil {
					return Query{}, err
				}
				q.Filter.State = st
			case "limit":
				n, err := strconv.Atoi(value)
				if err != nil || n < 1 {
					return Query{}, fmt.Errorf("limit must be a whole number of at least 1, not %q", value)
				}
				q.Limit = n
				continue
			default:
				return Query{}, fmt.Errorf("unknown key %q (keys: db, user, app, state, limit)", key)
			}
			filters = append(filters, strings.ToLower(key)+"="+value)
		case slices.Contains(targets, w):
			if !slices.Contains(q.Targets, w) {
				q.Targets = append(q.Targets, w)
			}
		case looksLikeDuration(w):
			d, err := time.ParseDuration(w)
			if err != nil || d < 0 {
				return Query{}, fmt.Errorf("%q is not a duration like 30s, 5m or 1h30m", w)
			}
			if sawDuration {
				return Query{}, fmt.Errorf("give one duration, not several")
			}
			sawDuration, q.Threshold = true, d
		default:
			return Query{}, unknownWord(w)
		}
	}
	q.Filter.MinDuration = q.Threshold
	q.Filter.QueryMax = pg.DefaultQueryMax // a message shows far less; the rest stays in the database
	if err := q.Filter.Check(); err != nil {
		return Query{}, err
	}
	q.Filters = strings.Join(filters, " ")
	q.Args = strings.Join(words, " ")
	return q, nil
}

func looksLikeDuration(w string) bool {
	return w != "" && (unicode.IsDigit(rune(w[0])) || w[0] == '-' || w[0] == '.')
}

// unknownWord is a word that is no target, duration or key=value. Its
// answer lists the targets the user may see there, which the parser does
// not know.
type unknownWord string

func (w unknownWord) Error() string {
	return fmt.Sprintf("unknown target or argument %q", trunc(string(w), 60))
}

func trunc(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// parseBulk reads `cancel|terminate [TARGET…] [DURATION] [filters]
// [reason="…"]`: the listing's grammar, a reason that takes the rest of the
// text, and at least one target or filter — nobody ends a whole fleet by
// accident.
func parseBulk(action pg.Action, text string, targets []string, defaultThreshold time.Duration) (Query, error) {
	// The first word is the action (ASCII, as ParseAction accepts it): the
	// rest is cut from the original text, never at a position found in a
	// case-folded copy, whose byte offsets differ.
	_, rest, _ := strings.Cut(strings.TrimLeftFunc(text, unicode.IsSpace), strings.Fields(text)[0])
	reason := ""
	if i := indexASCIIFold(rest, "reason="); i >= 0 {
		rest, reason = rest[:i], strings.TrimSpace(rest[i+len("reason="):])
		reason = strings.Trim(reason, "\"'“”‘’")
		if reason == "" {
			return Query{}, fmt.Errorf("reason= needs a few words, e.g. reason=\"INC-42 report blocks checkout\"")
		}
	}
	q, err := ParseCommand(rest, targets, defaultThreshold)
	if err != nil {
		return Query{}, err
	}
	switch {
	case q.Kind != KindList:
		return Query{}, fmt.Errorf("%s takes a listing's targets and filters, not %q", action, strings.Fields(rest)[0])
	case len(q.Targets) == 0 && q.Filters == "":
		return Query{}, fmt.Errorf("%s needs at least one target or filter (db=, user=, app=, state=), so that a whole fleet is never ended by accident", action)
	case q.Limit != 0:
		return Query{}, fmt.Errorf("limit= only shortens a listing; %s acts on every session that matches: narrow it with a target, db=, user=, app=, state= or a longer duration", action)
	}
	q.Kind, q.Action, q.Reason = KindBulk, action, reason
	return q, nil
}

// indexASCIIFold is the byte index of the first match of the ASCII word in
// s, ignoring ASCII case only, or -1: the index is valid in s itself.
func indexASCIIFold(s, word string) int {
	for i := 0; i+len(word) <= len(s); i++ {
		match := true
		for j := 0; j < len(word) && match; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			match = c == word[j]
		}
		if match {
			return i
		}
	}
	return -1
}

// parseAutopilot reads `autopilot`, `autopilot pause [TARGET]` and
// `autopilot resume [TARGET | RULE TARGET]`.
func parseAutopilot(words, targets []string) (Query, error) {
	q := Query{Kind: KindAutopilot}
	if len(words) == 0 {
		return q, nil
	}
	q.Verb = strings.ToLower(words[0])
	args := words[1:]
	switch {
	case q.Verb != "pause" && q.Verb != "resume":
		return Query{}, fmt.Errorf("autopilot takes pause or resume, not %q", trunc(words[0], 30))
	case len(args) == 0:
		return q, nil
	case len(args) == 1 && slices.Contains(targets, args[0]):
		q.Targets = args[:1]
		return q, nil
	case len(args) == 2 && q.Verb == "resume" && slices.Contains(targets, args[1]):
		q.Rule, q.Targets = args[0], args[1:]
		return q, nil
	case len(args) == 1:
		return Query{}, unknownWord(args[0])
	}
	return Query{}, fmt.Errorf("autopilot %s takes a target (or none for every target)%s", q.Verb,
		map[bool]string{true: ", or a rule and a target to resume after its breaker tripped", false: ""}[q.Verb == "resume"])
}
