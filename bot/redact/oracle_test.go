package redact

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	pganalyze "github.com/pganalyze/pg_query_go/v6"
	pgquery "github.com/wasilibs/go-pgquery"
	"github.com/wasilibs/go-pgquery/parser"
)

// The oracle is PostgreSQL's own scanner: libpg_query (PostgreSQL 17's
// scan.l) compiled to WebAssembly and run by wazero, through
// github.com/wasilibs/go-pgquery. It differs from the server in one way that
// matters here: it returns comments as tokens, so a -- comment between the
// parts of a continued string ('a' -- note\n'b', one constant to the
// server) splits the constant in two.

// oracleMu keeps oracle calls one at a time: go-pgquery compiles its module
// (seconds) for every call made while all its instances are busy.
var oracleMu sync.Mutex

// errUnknownPos is the oracle's error without a position (an escape string
// whose value is not valid UTF-8).
const errUnknownPos = -2

// pgScan scans src with the oracle and returns its tokens (comments and
// the whitespace between tokens included) up to the first error, and the
// error's position: -1 when there is none, errUnknownPos when the oracle
// gives none. An error inside a token (a bad escape) is placed at the
// token's start, as the oracle finds when it scans the text before it.
func pgScan(tb testing.TB, src string) ([]token, int) {
	tb.Helper()
	if i := strings.IndexByte(src, 0); i >= 0 {
		toks, pos := pgScan(tb, src[:i]) // a C string ends at NUL
		if pos == -1 {
			pos = i
		}
		return toks, pos
	}
	oracleMu.Lock()
	res, err := pgquery.Scan(src)
	oracleMu.Unlock()
	if err != nil {
		var pe *parser.Error
		if !errors.As(err, &pe) {
			tb.Fatalf("oracle: %v", err)
		}
		if pe.Cursorpos == 0 {
			return nil, errUnknownPos
		}
		pos := byteOffset(src, pe.Cursorpos-1)
		if pos >= len(src) { // an error at the end, inside the last token
			pos = len(src) - 1
		}
		toks, prev := pgScan(tb, src[:pos])
		if prev == -1 {
			prev = pos
		}
		return toks, prev
	}
	var toks []token
	end := 0
	for _, t := range res.Tokens {
		start := int(t.Start)
		if start > end {
			toks = append(toks, token{kind: space, start: end, end: start})
		}
		end = int(t.End)
		toks = append(toks, token{kind: oracleKind(src, t), start: start, end: end})
	}
	if end < len(src) {
		toks = append(toks, token{kind: space, start: end, end: len(src)})
	}
	for i, t := range toks {
		text := src[t.start:t.end]
		if t.kind == space && strings.Trim(text, " \t\n\r\f\v") != "" {
			tb.Fatalf("oracle left %q between tokens of %q", text, src)
		}
		if t.kind == str && (text[0] == '$' || (text[0] == '\'' && !strings.Contains(strings.ReplaceAll(text[1:len(text)-1], "''", ""), "'"))) {
			toks[i].plain = true
		}
	}
	return toks, -1
}

// byteOffset converts PostgreSQL's cursor position (in characters, as
// pg_mbstrlen counts them in UTF-8: by each lead byte) to a byte offset.
func byteOffset(src string, chars int) int {
	i := 0
	for ; chars > 0 && i < len(src); chars-- {
		switch c := src[i]; {
		case c&0x80 == 0:
			i++
		case c&0xe0 == 0xc0:
			i += 2
		case c&0xf0 == 0xe0:
			i += 3
		case c&0xf8 == 0xf0:
			i += 4
		default:
			i++
		}
	}
	return min(i, len(src))
}

func oracleKind(src string, t *pganalyze.ScanToken) kind {
	switch t.Token {
	case pganalyze.Token_SCONST, pganalyze.Token_USCONST:
		return str
	case pganalyze.Token_BCONST, pganalyze.Token_XCONST:
		return bits
	case pganalyze.Token_ICONST, pganalyze.Token_FCONST:
		return number
	case pganalyze.Token_PARAM:
		return param
	case pganalyze.Token_SQL_COMMENT, pganalyze.Token_C_COMMENT:
		return comment
	case pganalyze.Token_IDENT, pganalyze.Token_UIDENT:
		return ident
	case pganalyze.Token_NCHAR:
		if t.End-t.Start == 1 {
			return nchar
		}
		return ident
	}
	if t.KeywordKind != pganalyze.KeywordKind_NO_KEYWORD {
		return ident
	}
	if t.Token < 256 && strings.IndexByte(",()[].;:+-*/%^<>=", byte(t.Token)) < 0 {
		return other
	}
	return op
}

// differ compares scan with the oracle on src and returns what differs,
// or "". Two differences are expected and allowed. The oracle splits a
// continued string at a -- comment (see above): the -- comments it reports
// inside one of scan's constants, or after scan's error, are turned into
// spaces (which the server reads alike) and the oracle is asked again.
// And scan stops on a string the server reads otherwise with
// standard_conforming_strings off (the oracle reads it with the setting
// on).
func differ(tb testing.TB, src string) string {
	tb.Helper()
	mine, myErr := scan(src)
	text := src
	theirs, theirPos := pgScan(tb, text)
	for range 8 {
		blanked := blankSplits(text, mine, myErr, theirs)
		if blanked == text {
			break
		}
		text = blanked
		theirs, theirPos = pgScan(tb, text)
	}
	if theirPos == errUnknownPos {
		// The oracle gave no position: it must read the text before ours.
		if myErr == nil {
			return "no error, the oracle stopped (no position)"
		}
		if theirs, theirPos = pgScan(tb, text[:myErr.pos]); theirPos != -1 {
			return fmt.Sprintf("stopped at %d (%s), the oracle earlier (at %d)", myErr.pos, myErr.why, theirPos)
		}
		theirPos = myErr.pos
	}
	mine, theirs = significant(mine), significant(theirs)
	i, j := 0, 0
	for i < len(mine) && j < len(theirs) {
		m, o := mine[i], theirs[j]
		same := m.start == o.start && m.end == o.end
		if same && (m.kind == o.kind || (m.kind == nchar && o.kind == ident && i+1 == len(mine) && j+1 == len(theirs))) {
			// The N of an N'…' cut short is the identifier n to the oracle.
			i, j = i+1, j+1
			continue
		}
		return fmt.Sprintf("token %s %q, the oracle's %s %q", m.kind, src[m.start:m.end], o.kind, src[o.start:o.end])
	}
	switch {
	case myErr != nil && myErr.ambiguous:
		return "" // the oracle may read on
	case i < len(mine):
		m := mine[i]
		return fmt.Sprintf("token %s %q where the oracle stopped (at %d)", m.kind, src[m.start:m.end], theirPos)
	case j < len(theirs):
		o := theirs[j]
		return fmt.Sprintf("stopped (%v) before the oracle's %s %q", myErr, o.kind, src[o.start:o.end])
	case myErr == nil && theirPos != -1:
		return fmt.Sprintf("no error, the oracle stopped at %d", theirPos)
	case myErr != nil && theirPos == -1:
		return fmt.Sprintf("stopped at %d (%s), the oracle read on", myErr.pos, myErr.why)
	case myErr != nil && myErr.pos != theirPos:
		return fmt.Sprintf("stopped at %d (%s), the oracle at %d", myErr.pos, myErr.why, theirPos)
	}
	return ""
}

// blankSplits returns text with the -- comments among the oracle's tokens
// that lie inside one of scan's constants, or after scan's error, turned
// into spaces.
func blankSplits(text string, mine []token, myErr *scanError, theirs []token) string {
	inside := func(t token) bool {
		if myErr != nil && t.start >= myErr.pos {
			return true
		}
		for _, m := range mine {
			if m.kind.constant() && m.start < t.start && t.end <= m.end {
				return true
			}
		}
		return false
	}
	b := []byte(text)
	for _, t := range theirs {
		if t.kind == comment && text[t.start] == '-' && inside(t) {
			for p := t.start; p < t.end; p++ {
				b[p] = ' '
			}
		}
	}
	return string(b)
}

func significant(ts []token) []token {
	out := ts[:0:0]
	for _, t := range ts {
		if t.kind != space {
			out = append(out, t)
		}
	}
	return out
}

func (k kind) String() string {
	return [...]string{"space", "comment", "ident", "param", "op", "other", "nchar", "str", "bits", "number"}[k]
}

// leak returns what the redaction of src shows that the oracle reads as a
// constant, a comment or text after its error, or a setting's value; ""
// if nothing. Bodies shown redacted are checked the same way, inside.
func leak(tb testing.TB, src string, depth int) string {
	tb.Helper()
	toks, err := scan(src)
	m := mark(src, toks, depth)
	theirs, theirPos := pgScan(tb, src)
	if theirPos == errUnknownPos && err != nil { // differ checks the oracle reads the text before err
		theirs, theirPos = pgScan(tb, src[:err.pos])
		theirPos = max(theirPos, err.pos)
	}
	secret := make([]bool, len(src)+1)
	for _, t := range theirs {
		if t.kind.constant() || t.kind == comment {
			for p := t.start; p < t.end; p++ {
				secret[p] = true
			}
		}
	}
	if theirPos >= 0 {
		for p := theirPos; p < len(src); p++ {
			secret[p] = true
		}
	}
	for _, p := range settingValues(tb, src) {
		secret[p] = true
	}
	for i, t := range toks {
		if err != nil && t.end > err.pos {
			break
		}
		switch {
		case m.body[i] != "":
			if l := leak(tb, bodyText(src, t), depth+1); l != "" {
				return "in a body: " + l
			}
		case m.hide[i] || t.kind == comment:
		default:
			for p := t.start; p < t.end; p++ {
				if secret[p] {
					return fmt.Sprintf("%q at %d", src[t.start:t.end], t.start)
				}
			}
		}
	}
	return ""
}

func bodyText(src string, t token) string {
	r := reader{src: src}
	return r.inner(t)
}

// settingValues returns where the values of SET, ALTER … SET and a
// function's SET clause start, as PostgreSQL's parser reads them (each an
// A_Const among a VariableSetStmt's args); none unless src parses.
func settingValues(tb testing.TB, src string) []int {
	tb.Helper()
	if !strings.Contains(strings.ToLower(src), "set") {
		return nil
	}
	oracleMu.Lock()
	tree, err := pgquery.ParseToJSON(src)
	oracleMu.Unlock()
	if err != nil {
		return nil
	}
	var v any
	if err := json.Unmarshal([]byte(tree), &v); err != nil {
		tb.Fatal(err)
	}
	var at []int
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			// A node (VariableSetStmt), or ALTER ROLE's and ALTER
			// SYSTEM's field of that type (setstmt).
			for _, key := range []string{"VariableSetStmt", "setstmt"} {
				s, _ := v[key].(map[string]any)
				args, _ := s["args"].([]any)
				for _, a := range args {
					if c, ok := a.(map[string]any)["A_Const"].(map[string]any); ok {
						loc, _ := c["location"].(float64)
						at = append(at, int(loc))
					}
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return at
}

// TestOracle checks the oracle's adapter on texts whose reading is known,
// so that a differential test that passes means something.
func TestOracle(t *testing.T) {
	toks, pos := pgScan(t, "SELECT 'a' -- c\n, $$x$$, 1")
	var kinds []string
	for _, tk := range significant(toks) {
		kinds = append(kinds, tk.kind.String())
	}
	if got := strings.Join(kinds, " "); got != "ident str comment op str op number" || pos != -1 {
		t.Errorf("tokens %s, error at %d", got, pos)
	}
	if _, pos := pgScan(t, "SELECT 1, 'open"); pos != 10 {
		t.Errorf("unterminated string: error at %d, want 10", pos)
	}
	if _, pos := pgScan(t, "SELECT 'é', E'\\u12'"); pos != 13 {
		t.Errorf("bad escape: error at %d, want 13 (the string's start, in bytes)", pos)
	}
	if _, pos := pgScan(t, "SELECT E'\\xff'"); pos != errUnknownPos {
		t.Errorf("invalid UTF-8: error at %d, want none given", pos)
	}
	if got := settingValues(t, "SET a.b TO x, 'y'; ALTER ROLE r SET c = -1"); fmt.Sprint(got) != "[11 14 40]" {
		t.Errorf("setting values at %v", got)
	}
	if l := leak(t, "SELECT 'x'", 0); l != "" {
		t.Errorf("leak on a redacted text: %s", l)
	}
	if d := differ(t, "SELECT 'a' -- c\n'b'"); d != "" {
		t.Errorf("the oracle's split at a comment: %s", d)
	}
}
