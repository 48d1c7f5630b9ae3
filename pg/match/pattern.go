package match

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// A pattern is read by path.Match's grammar: * matches any run of
// characters except '/', ? one character except '/', [a-z] and [^a-z] a
// class, \c the character c; anything else itself, case and all. It is
// matched in Go here and in PostgreSQL through Regexp, which means the
// same: path.Match itself is not used to match, as it departs from that
// grammar where no regular expression can follow it (after a *, it commits
// to the first place the next part matches, even when a later one would
// let the rest match across a '/'; and it tries a class at byte offsets
// inside a multi-byte character).
type pattern []atom

// atom is one element of a pattern: a star, or something that matches
// exactly one character.
type atom struct {
	kind    byte // '*', '?', '[' (a class) or 'c' (the literal r)
	r       rune
	negated bool
	ranges  [][2]rune // for a class: lo, hi (inclusive)
}

var errBadPattern = errors.New("syntax error in pattern")

// parse reads p; it accepts exactly the patterns path.Match accepts.
func parse(p string) (pattern, error) {
	var out pattern
	for p != "" {
		switch p[0] {
		case '*':
			if len(out) == 0 || out[len(out)-1].kind != '*' {
				out = append(out, atom{kind: '*'})
			}
			p = p[1:]
		case '?':
			out = append(out, atom{kind: '?'})
			p = p[1:]
		case '[':
			a, rest, err := parseClass(p[1:])
			if err != nil {
				return nil, err
			}
			out, p = append(out, a), rest
		case '\\':
			if len(p) == 1 {
				return nil, errBadPattern
			}
			p = p[1:]
			fallthrough
		default:
			r, n := utf8.DecodeRuneInString(p)
			out, p = append(out, atom{kind: 'c', r: r}), p[n:]
		}
	}
	return out, nil
}

// parseClass reads a class after its '[': [^]lo[-hi]… up to ']'.
func parseClass(p string) (atom, string, error) {
	a := atom{kind: '['}
	if p != "" && p[0] == '^' {
		a.negated, p = true, p[1:]
	}
	for {
		if p != "" && p[0] == ']' && len(a.ranges) > 0 {
			return a, p[1:], nil
		}
		lo, rest, err := classChar(p)
		if err != nil {
			return a, "", err
		}
		hi := lo
		if rest[0] == '-' {
			if hi, rest, err = classChar(rest[1:]); err != nil {
				return a, "", err
			}
		}
		a.ranges, p = append(a.ranges, [2]rune{lo, hi}), rest
	}
}

// classChar reads one possibly escaped character of a class, which must
// be followed by more of the pattern (at least the closing ']').
func classChar(p string) (rune, string, error) {
	if p == "" || p[0] == '-' || p[0] == ']' {
		return 0, "", errBadPattern
	}
	if p[0] == '\\' {
		if p = p[1:]; p == "" {
			return 0, "", errBadPattern
		}
	}
	r, n := utf8.DecodeRuneInString(p)
	if r == utf8.RuneError && n == 1 || len(p) == n {
		return 0, "", errBadPattern
	}
	return r, p[n:], nil
}

// one reports whether a, which is not a star, matches the character r.
func (a atom) one(r rune) bool {
	switch a.kind {
	case '?':
		return r != '/'
	case '[':
		for _, lh := range a.ranges {
			if lh[0] <= r && r <= lh[1] {
				return !a.negated
			}
		}
		return a.negated
	}
	return a.r == r
}

// match reports whether p matches all of s. It keeps, for each prefix of
// the pattern, which prefixes of s it matches: no backtracking, so no
// pattern takes more than len(p)·len(s) steps.
func (p pattern) match(s string) bool {
	rs := []rune(s)
	cur, next := make([]bool, len(rs)+1), make([]bool, len(rs)+1)
	cur[0] = true
	for _, a := range p {
		if a.kind == '*' {
			next[0] = cur[0]
			for j := 1; j <= len(rs); j++ {
				next[j] = cur[j] || next[j-1] && rs[j-1] != '/'
			}
		} else {
			next[0] = false
			for j := 1; j <= len(rs); j++ {
				next[j] = cur[j-1] && a.one(rs[j-1])
			}
		}
		cur, next = next, cur
	}
	return cur[len(rs)]
}

// Regexp is pattern p as a regular expression that both PostgreSQL (its
// advanced regular expressions: the ~ operator) and Go's regexp read alike
// and match exactly when Pattern(p, s) does: anchored, case-sensitive,
// * as [^/]*, every ASCII punctuation character escaped, classes as
// bracket expressions (a reversed range, which matches nothing, left out).
// An empty p is "", which every text matches. Apply it under COLLATE "C"
// in PostgreSQL: the match then needs no locale and no catalog.
func Regexp(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	pat, err := parse(p)
	if err != nil {
		return "", fmt.Errorf("%q: %w", p, err)
	}
	var b strings.Builder
	b.WriteByte('^')
	for _, a := range pat {
		switch a.kind {
		case '*':
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '[':
			writeClass(&b, a)
		default:
			writeChar(&b, a.r)
		}
	}
	b.WriteByte('$')
	return b.String(), nil
}

// Every character but NUL, which no PostgreSQL text holds, as a range:
// the class that matches nothing is its negation.
const anyFirst, anyLast = rune(1), utf8.MaxRune

func writeClass(b *strings.Builder, a atom) {
	var ranges [][2]rune
	for _, lh := range a.ranges {
		if lh[0] <= lh[1] {
			ranges = append(ranges, lh)
		}
	}
	negated := a.negated
	if len(ranges) == 0 { // [z-a] matches nothing, [^z-a] anything
		ranges, negated = [][2]rune{{anyFirst, anyLast}}, !negated
	}
	b.WriteByte('[')
	if negated {
		b.WriteByte('^')
	}
	for _, lh := range ranges {
		writeChar(b, lh[0])
		if lh[1] != lh[0] {
			b.WriteByte('-')
			writeChar(b, lh[1])
		}
	}
	b.WriteByte(']')
}

// writeChar writes r so that it stands for itself, inside a bracket
// expression or out: both dialects read a backslash before ASCII
// punctuation as that character (and before a letter or digit as
// something else, so those stay bare).
func writeChar(b *strings.Builder, r rune) {
	if r < utf8.RuneSelf && !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') && r > ' ' && r != 0x7f {
		b.WriteByte('\\')
	}
	b.WriteRune(r)
}
