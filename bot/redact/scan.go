package redact

import "strings"

// kind is what PostgreSQL's scanner (src/backend/parser/scan.l) makes of a
// token, as far as redaction cares.
type kind uint8

const (
	space   kind = iota // whitespace
	comment             // -- to the end of the line, or /* */ (nested)
	ident               // identifier or keyword, plain or quoted ("x", U&"x")
	param               // $1
	op                  // operator or punctuation: + <> :: .. ; ( ,
	other               // a byte no rule takes ($ without a tag, \, {)
	nchar               // the N of N'…', which the scanner returns on its own
	str                 // string constant: '…', E'…', U&'…', N'…' (after its N), $tag$…$tag$
	bits                // bit string constant: B'…', X'…'
	number              // 42, 3.5, .5, 1e10, 0x1F, 0o17, 0b101, 1_000
)

// constant reports whether the scanner reads k as a constant: a literal,
// which redaction hides.
func (k kind) constant() bool { return k >= nchar }

// token is src[start:end], read as kind.
type token struct {
	start, end int
	kind       kind
	// plain: a str that is a single '…' with no prefix and no
	// continuation, or a dollar quote: its body can be read back exactly
	// (a DO or function body).
	plain bool
}

// scanError is where the scanner stops: PostgreSQL reports an error
// there (an unterminated string, trailing junk after a number), or the
// text may be read two ways there (ambiguous). Redaction hides everything
// from pos on.
type scanError struct {
	pos int
	why string
	// ambiguous: PostgreSQL reads the text differently with
	// standard_conforming_strings off, which redaction cannot know.
	ambiguous bool
}

// scanner reads src by PostgreSQL's lexical rules (PostgreSQL 17, with
// standard_conforming_strings on, the default since 9.1).
type scanner struct {
	src  string
	toks []token
}

// scan returns the tokens of src up to the first error, and the error. A
// NUL byte, which no query text from the server holds, ends the text as it
// ends a C string, with an error there.
func scan(src string) ([]token, *scanError) {
	text := src
	nul := strings.IndexByte(src, 0)
	if nul >= 0 {
		text = src[:nul]
	}
	s := scanner{src: text, toks: make([]token, 0, len(text)/3+1)}
	for pos := 0; pos < len(text); {
		t, err := s.next(pos)
		if err != nil {
			return s.toks, err
		}
		s.toks = append(s.toks, t)
		pos = t.end
	}
	if nul >= 0 {
		return s.toks, &scanError{pos: nul, why: "NUL byte"}
	}
	return s.toks, nil
}

// next reads the token at i.
func (s *scanner) next(i int) (token, *scanError) {
	src := s.src
	c, d := src[i], at(src, i+1)
	tok := func(k kind, end int) (token, *scanError) { return token{kind: k, start: i, end: end}, nil }
	switch {
	case isSpace(c):
		j := i + 1
		for j < len(src) && isSpace(src[j]) {
			j++
		}
		return tok(space, j)
	case c == '-' && d == '-':
		return tok(comment, lineEnd(src, i))
	case c == '/' && d == '*':
		end, ok := blockComment(src, i)
		if !ok {
			return token{}, &scanError{pos: i, why: "unterminated /* comment"}
		}
		return tok(comment, end)
	case c == '\'':
		return s.quoted(i, i+1, xq)
	case d == '\'' && (c == 'b' || c == 'B'):
		return s.quoted(i, i+2, xb)
	case d == '\'' && (c == 'x' || c == 'X'):
		return s.quoted(i, i+2, xh)
	case d == '\'' && (c == 'e' || c == 'E'):
		return s.quoted(i, i+2, xe)
	case d == '\'' && (c == 'n' || c == 'N'):
		return tok(nchar, i+1) // the string follows as a token of its own
	case d == '&' && (c == 'u' || c == 'U'):
		switch at(src, i+2) {
		case '\'':
			return s.quoted(i, i+3, xus)
		case '"':
			return quotedIdent(src, i, i+3)
		}
		return tok(ident, i+1) // u, then & as an operator
	case c == '"':
		return quotedIdent(src, i, i+1)
	case c == '$':
		return dollar(src, i)
	case isDigit(c) || (c == '.' && isDigit(d)):
		return numeric(src, i)
	case c == ':' && (d == ':' || d == '='), c == '.' && d == '.':
		return tok(op, i+2)
	case isOpChar(c):
		return operator(src, i)
	case strings.IndexByte(",()[].;:", c) >= 0:
		return tok(op, i+1)
	case isIdentStart(c):
		j := i + 1
		for j < len(src) && isIdentCont(src[j]) {
			j++
		}
		return tok(ident, j)
	}
	return tok(other, i+1)
}

// lineEnd returns the end of the -- comment at i: PostgreSQL ends it at \n
// or \r, or the end of the text.
func lineEnd(src string, i int) int {
	if j := strings.IndexAny(src[i:], "\n\r"); j >= 0 {
		return i + j
	}
	return len(src)
}

// blockComment returns the end of the /* */ comment at i. Comments nest;
// reports false when the text ends first.
func blockComment(src string, i int) (int, bool) {
	depth := 0
	for j := i + 2; j < len(src); {
		switch {
		case src[j] == '/' && at(src, j+1) == '*':
			depth++
			j += 2
		case src[j] == '*':
			for j < len(src) && src[j] == '*' {
				j++
			}
			if at(src, j) == '/' {
				if depth == 0 {
					return j + 1, true
				}
				depth--
				j++
			}
		default:
			j++
		}
	}
	return 0, false
}

// operator reads the operator at i: the longest run of operator
// characters, cut before a -- or /* in it (a comment starts there), and
// without its trailing + and - unless it holds a character no SQL-standard
// operator has (a+-1 is a + -1; a@-1 is a @- 1).
func operator(src string, i int) (token, *scanError) {
	j := i
	for j < len(src) && isOpChar(src[j]) {
		j++
	}
	text := src[i:j]
	n := len(text)
	if k := strings.Index(text, "/*"); k >= 0 {
		n = k
	}
	if k := strings.Index(text[:n], "--"); k >= 0 {
		n = k
	}
	if n > 1 && (text[n-1] == '+' || text[n-1] == '-') && !strings.ContainsAny(text[:n-1], "~!@#^&|`?%") {
		for n > 1 && (text[n-1] == '+' || text[n-1] == '-') {
			n--
		}
	}
	if n >= nameDataLen {
		return token{}, &scanError{pos: i, why: "operator too long"}
	}
	return token{kind: op, start: i, end: i + n}, nil
}

// nameDataLen is PostgreSQL's NAMEDATALEN: an operator must be shorter.
const nameDataLen = 64

// dollar reads what starts with $ at i: a parameter ($1), a dollar-quoted
// string ($$…$$, $tag$…$tag$, its tag an identifier without $), or a lone
// $ (PostgreSQL returns it as a character of its own).
func dollar(src string, i int) (token, *scanError) {
	j := i + 1
	if isDigit(at(src, j)) {
		for j < len(src) && isDigit(src[j]) {
			j++
		}
		return token{kind: param, start: i, end: j}, nil
	}
	if c := at(src, j); c != '$' && !isIdentStart(c) {
		return token{kind: other, start: i, end: i + 1}, nil
	}
	for j < len(src) && isIdentCont(src[j]) && src[j] != '$' {
		j++
	}
	if at(src, j) != '$' {
		return token{kind: other, start: i, end: i + 1}, nil // $tag without its closing $
	}
	delim := src[i : j+1]
	k := strings.Index(src[j+1:], delim)
	if k < 0 {
		return token{}, &scanError{pos: i, why: "unterminated dollar-quoted string"}
	}
	return token{kind: str, start: i, end: j + 1 + k + len(delim), plain: true}, nil
}

// quotedIdent reads the quoted identifier at start ("…" or U&"…"), whose
// text begins at i; "" is a quote in it.
func quotedIdent(src string, start, i int) (token, *scanError) {
	for j := i; j < len(src); j++ {
		if src[j] != '"' {
			continue
		}
		if at(src, j+1) == '"' {
			j++
			continue
		}
		if j == i {
			return token{}, &scanError{pos: start, why: "zero-length delimited identifier"}
		}
		return token{kind: ident, start: start, end: j + 1}, nil
	}
	return token{}, &scanError{pos: start, why: "unterminated quoted identifier"}
}

// at returns src[i], or 0 past the end.
func at(src string, i int) byte {
	if i < len(src) {
		return src[i]
	}
	return 0
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isIdentStart: letters, _ and every non-ASCII byte start an identifier.
func isIdentStart(c byte) bool {
	return c == '_' || c >= 0x80 || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// isIdentCont: digits and $ may continue one.
func isIdentCont(c byte) bool { return isIdentStart(c) || isDigit(c) || c == '$' }

func isOpChar(c byte) bool { return c != 0 && strings.IndexByte("~!@#^&|`?+-*/%<>=", c) >= 0 }
