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
		case "doctor":
			q := Query{Kind: KindDoctor}
			for _, w := range words[1:] {
				if !slices.Contains(targets, w) {
					return Query{}, unknownTarget(w, targets)
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
			return Query{}, unknownTarget(w, targets)
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

func unknownTarget(w string, targets []string) error {
	return fmt.Errorf("unknown target or argument %q (targets: %s)", trunc(w, 60), strings.Join(targets, ", "))
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
	rest := strings.TrimSpace(text)[len(action):]
	reason := ""
	if i := strings.Index(strings.ToLower(rest), "reason="); i >= 0 {
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
	if q.Kind != KindList {
		return Query{}, fmt.Errorf("%s takes a listing's targets and filters, not %q", action, strings.Fields(rest)[0])
	}
	if len(q.Targets) == 0 && q.Filters == "" {
		return Query{}, fmt.Errorf("%s needs at least one target or filter (db=, user=, app=, state=), so that a whole fleet is never ended by accident", action)
	}
	q.Kind, q.Action, q.Reason = KindBulk, action, reason
	return q, nil
}
