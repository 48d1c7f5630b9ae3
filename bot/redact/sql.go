package redact

import (
	"strings"

	"github.com/DataDog/go-sqllexer"
)

// hidden replaces each literal, as pg_stat_statements shows $1.
const hidden = "?"

// SQL returns query with every literal replaced by ? and every comment
// dropped: string constants, E'…' escape strings, U&'…' Unicode strings,
// B'…' and X'…' bit strings, dollar quotes and numbers. Quoted identifiers,
// keywords, operators and $n parameters are kept.
//
// DataDog's go-sqllexer (PostgreSQL dialect) finds the tokens. It is built
// for obfuscating SQL but aims at a readable signature, not at secrecy, so
// SQL corrects it where PostgreSQL reads the text differently or where a
// token would leak: nested /* */ comments, quoted identifiers glued to an
// identifier (a"x"), comments glued to identifiers or operators (col/*x*/,
// =--x), -- comments ending at a carriage return, unterminated tokens
// (reported as errors and otherwise passed through), digits glued to a
// number (0b1010, 1_000). See redactor.token.
//
// Backslashes: a plain string is read as PostgreSQL does with
// standard_conforming_strings on (the default since 9.1). A backslash before
// a quote in a plain string would be read differently with the setting off,
// so such a string hides the rest of the text.
func SQL(query string) string {
	r := redactor{src: query, out: make([]byte, 0, len(query))}
	for pos := 0; pos < len(query); {
		pos = r.lex(pos)
	}
	return strings.TrimRight(string(r.out), " \t\r\n")
}

// redactor writes the redacted form of src to out.
type redactor struct {
	src string
	out []byte
	// value: the last significant token was a value (identifier, literal,
	// closing bracket), so a sign after it is a binary operator.
	value bool
}

// lex runs the lexer from pos until the end of src or until a token needs
// reading by PostgreSQL's rules (token returns a position other than the
// token's end), and returns where to continue.
func (r *redactor) lex(pos int) int {
	lx := sqllexer.New(r.src[pos:], sqllexer.WithDBMS(sqllexer.DBMSPostgres))
	for {
		tok := lx.Scan()
		if tok.Type == sqllexer.EOF {
			if pos < len(r.src) { // the lexer stopped early (a NUL byte)
				return r.hideRest()
			}
			return pos
		}
		// Tokens are consecutive slices of the input; anything else means
		// the lexer and this loop disagree on where we are.
		if tok.Value == "" || !strings.HasPrefix(r.src[pos:], tok.Value) {
			return r.hideRest()
		}
		end := pos + len(tok.Value)
		if next := r.token(tok.Type, pos, end); next != end {
			return next
		}
		pos = end
	}
}

// token writes the redacted form of the token src[pos:end] of type t and
// returns where the next token starts: end, or another position where the
// lexer must start again.
func (r *redactor) token(t sqllexer.TokenType, pos, end int) int {
	v := r.src[pos:end]
	switch t {
	case sqllexer.SPACE:
		r.out = append(r.out, v...)
		return end
	case sqllexer.STRING:
		if escape := r.dropPrefix(pos); !escape && backslashQuote(v) {
			return r.hideRest()
		}
		r.literal()
		return end
	case sqllexer.DOLLAR_QUOTED_STRING, sqllexer.DOLLAR_QUOTED_FUNCTION:
		r.literal()
		return end
	case sqllexer.INCOMPLETE_STRING:
		r.dropPrefix(pos)
		return r.hideRest()
	case sqllexer.NUMBER:
		return r.number(v, pos, end)
	case sqllexer.COMMENT:
		// PostgreSQL ends a -- comment at \r too; the lexer only at \n.
		if i := strings.IndexByte(v, '\r'); i >= 0 {
			return pos + i
		}
		return end
	case sqllexer.MULTILINE_COMMENT:
		return r.comment(pos)
	case sqllexer.QUOTED_IDENT:
		return r.quotedIdent(pos)
	case sqllexer.ERROR:
		// The lexer reports unterminated comments, dollar quotes and quoted
		// identifiers as errors.
		switch {
		case strings.HasPrefix(v, "/*"):
			return r.comment(pos)
		case strings.HasPrefix(v, `"`):
			return r.quotedIdent(pos)
		}
		return r.hideRest()
	}
	// Identifiers, keywords, operators, punctuation, parameters. The lexer
	// lets an identifier run on through " / . ! ? # @ (col"x", col/*c*/,
	// a/5) and an operator through -- and /* (=--c, #-- c), and reads @5 as
	// a bind parameter: PostgreSQL starts a quoted identifier, a comment or a
	// number there, so the token ends there.
	if k := cut(r.src[pos:min(end+1, len(r.src))], len(v)); k > 0 {
		v, end = v[:k], pos+k
	}
	r.out = append(r.out, v...)
	r.value = t == sqllexer.IDENT || t == sqllexer.POSITIONAL_PARAMETER || t == sqllexer.BOOLEAN ||
		t == sqllexer.NULL || v == ")" || v == "]"
	return end
}

// cut returns where, inside the first n bytes of s (a token and the byte
// after it), PostgreSQL starts a quoted identifier, a comment or a number
// (a digit after a character no identifier has: a/5, x!5, @5, t.5), or -1.
func cut(s string, n int) int {
	for i := 1; i < n; i++ {
		switch {
		case s[i] == '"', strings.HasPrefix(s[i:], "/*"), strings.HasPrefix(s[i:], "--"):
			return i
		case '0' <= s[i] && s[i] <= '9' && !identByte(s[i-1]):
			return i
		}
	}
	return -1
}

// literal writes the placeholder for a literal.
func (r *redactor) literal() {
	r.out = append(r.out, hidden...)
	r.value = true
}

// hideRest hides everything from here on: the text cannot be read with
// certainty.
func (r *redactor) hideRest() int {
	r.literal()
	return len(r.src)
}
