package redact

import "strings"

// hidden replaces each literal, as pg_stat_statements shows $1.
const hidden = "?"

// SQL returns query with every literal replaced by ? and every comment
// dropped, read by PostgreSQL's own lexical rules (see scan): string
// constants of every kind (with their E, U&, N, B and X prefixes and
// continuation lines), dollar quotes and numbers. Values that are
// identifiers by syntax are hidden too: the values of SET, of ALTER ROLE,
// DATABASE and SYSTEM … SET, and the SET clauses of functions. Keywords,
// identifiers (quoted ones too), operators and $n parameters are kept, so
// the statement keeps its shape.
//
// The body of a DO block, or of a function in SQL or PL/pgSQL (AS $$…$$),
// is redacted the same way rather than hidden whole; a body in another
// language, or one whose language cannot be told, is hidden.
//
// The text comes from pg_stat_activity: cut at track_activity_query_size,
// often inside a literal or comment, and not always valid SQL (a failed
// statement's text stays there while its transaction is aborted). Where
// the scanner stops (PostgreSQL reports an error there, such as an
// unterminated string cut short, junk after a number, or the text could
// be read two ways) everything from there on is hidden.
func SQL(query string) string {
	return strings.TrimRight(redactText(query, 0), " \t\n\r\f\v")
}

// maxDepth bounds the bodies read inside bodies; deeper ones are hidden.
const maxDepth = 4

// redactText redacts src, itself a body at depth.
func redactText(src string, depth int) string {
	toks, err := scan(src)
	return render(src, toks, mark(src, toks, depth), err)
}

// marks say what redaction does with each token.
type marks struct {
	hide []bool         // shown as ?
	body map[int]string // a body redacted, with its quotes: shown instead of token i
}

// render writes src with each token as m says: constants and values
// hidden (one ? for hidden tokens that touch), comments dropped, bodies
// replaced, and everything from err on hidden.
func render(src string, toks []token, m marks, err *scanError) string {
	out := make([]byte, 0, len(src))
	glued := false // out ends with the ? of a hidden token that ends at the next one's start
	for i, t := range toks {
		body, isBody := m.body[i]
		switch {
		case t.kind == comment:
			out = separate(out, src, t.end)
			glued = false
			continue
		case isBody:
			out = append(out, body...)
		case m.hide[i]:
			if !glued {
				out = append(out, hidden...)
			}
		default:
			out = append(out, src[t.start:t.end]...)
		}
		glued = m.hide[i] && !isBody && (i+1 == len(toks) || toks[i+1].start == t.end)
	}
	if err != nil && !glued {
		out = append(out, hidden...)
	}
	return string(out)
}

// separate keeps the tokens around a dropped comment apart with one space
// (a/**/b is a b; a /**/ b is not a   b).
func separate(out []byte, src string, next int) []byte {
	if len(out) == 0 || next >= len(src) {
		return out
	}
	switch last := out[len(out)-1]; {
	case !isSpace(last) && !isSpace(src[next]):
		out = append(out, ' ')
	case last == ' ' && isSpace(src[next]):
		out = out[:len(out)-1]
	}
	return out
}
