package redact

import (
	"strings"
	"unicode/utf8"
)

// state is the kind of quoted constant being read, as scan.l's exclusive
// start conditions name them.
type state uint8

const (
	xq  state = iota // '…': a doubled quote is a quote, a backslash is itself
	xe               // E'…': backslash escapes too
	xb               // B'…': no escapes at all, not even a doubled quote
	xh               // X'…': likewise
	xus              // U&'…': as xq; its escapes are read later, by the parser
)

// quoted reads the quoted constant at start whose text begins at i. After
// its closing quote, whitespace holding a newline (and -- comments) and
// another quote continue it: 'a'\n'b' is 'ab'.
//
// A plain '…' in which a backslash precedes a quote is read differently
// with standard_conforming_strings off (a backslash then escapes the quote), and
// the session's setting is unknown: the scan stops there, ambiguous.
func (s *scanner) quoted(start, i int, st state) (token, *scanError) {
	t, nonASCII, err := s.read(start, i, st, nil)
	if err == nil && nonASCII {
		// An escape gave a byte past ASCII: the value, read again, must
		// be valid UTF-8 without NUL.
		var lit []byte
		s.read(start, i, st, &lit)
		if !validText(lit) {
			return token{}, &scanError{pos: start, why: "invalid byte sequence in an escape string"}
		}
	}
	return t, err
}

// read reads the quoted constant as quoted says, appending the value of an
// E'…' to lit unless it is nil, and reports whether an escape gave a
// non-ASCII byte.
func (s *scanner) read(start, i int, st state, lit *[]byte) (token, bool, *scanError) {
	src := s.src
	k := kind(str)
	if st == xb || st == xh {
		k = bits
	}
	nonASCII := false
	for segments := 1; ; segments++ {
		j, err := s.segment(start, i, st, lit, &nonASCII)
		if err != nil {
			return token{}, false, err
		}
		// j is the closing quote.
		m, newline := j+1, false
		for m < len(src) {
			switch c := src[m]; {
			case isSpace(c):
				newline = newline || c == '\n' || c == '\r'
				m++
				continue
			case c == '-' && at(src, m+1) == '-':
				m = lineEnd(src, m)
				continue
			}
			break
		}
		if newline && at(src, m) == '\'' {
			i = m + 1
			continue
		}
		return token{kind: k, start: start, end: j + 1, plain: st == xq && segments == 1 && start+1 == i}, nonASCII, nil
	}
}

// segment reads one quoted segment from i, after its opening quote, and
// returns the position of its closing quote. For E'…' it appends the
// value to lit (unless nil) and notes escapes that give a non-ASCII byte.
func (s *scanner) segment(start, i int, st state, lit *[]byte, nonASCII *bool) (int, *scanError) {
	src := s.src
	for j := i; j < len(src); {
		c := src[j]
		switch {
		case c == '\'' && (st == xb || st == xh):
			return j, nil
		case c == '\'' && at(src, j+1) == '\'':
			if st == xq && backslashes(src, i, j)%2 == 1 {
				return 0, &scanError{pos: start, why: `\' in a string: read differently with standard_conforming_strings off`, ambiguous: true}
			}
			if st == xe && lit != nil {
				*lit = append(*lit, '\'')
			}
			j += 2
		case c == '\'':
			if st == xq && backslashes(src, i, j)%2 == 1 {
				return 0, &scanError{pos: start, why: `\' in a string: read differently with standard_conforming_strings off`, ambiguous: true}
			}
			return j, nil
		case c == '\\' && st == xe:
			n, err := escape(src, start, j, lit, nonASCII)
			if err != nil {
				return 0, err
			}
			j = n
		default:
			if st == xe && lit != nil {
				*lit = append(*lit, c)
			}
			j++
		}
	}
	return 0, &scanError{pos: start, why: "unterminated quoted string"}
}

// backslashes counts the backslashes right before src[j], from i on.
func backslashes(src string, i, j int) int {
	n := 0
	for j-1-n >= i && src[j-1-n] == '\\' {
		n++
	}
	return n
}

// escape reads the backslash escape at j in an E'…' string and returns
// where it ends: \u and \U with 4 and 8 hex digits (UTF-16 surrogates in
// pairs), octal \0 to \777 (one byte), \x with 1 or 2 hex digits, and \c
// for any other byte c. A malformed Unicode escape is an error.
func escape(src string, start, j int, lit *[]byte, nonASCII *bool) (int, *scanError) {
	bad := func() *scanError { return &scanError{pos: start, why: "invalid Unicode escape"} }
	c := at(src, j+1)
	switch {
	case j+1 >= len(src):
		return 0, &scanError{pos: start, why: "unterminated quoted string"}
	case c == 'u' || c == 'U':
		r, n, ok := unicodeEscape(src, j)
		if !ok {
			return 0, bad()
		}
		switch {
		case 0xD800 <= r && r <= 0xDBFF:
			r2, n2, ok := unicodeEscape(src, n)
			if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
				return 0, bad()
			}
			r, n = 0x10000+(r-0xD800)<<10+(r2-0xDC00), n2
		case 0xDC00 <= r && r <= 0xDFFF, r == 0, r > utf8.MaxRune:
			return 0, bad()
		}
		var buf [utf8.UTFMax]byte
		appendLit(lit, buf[:utf8.EncodeRune(buf[:], rune(r))]...)
		return n, nil
	case '0' <= c && c <= '7':
		n, v := j+1, 0
		for n < len(src) && n < j+4 && '0' <= src[n] && src[n] <= '7' {
			v = v*8 + int(src[n]-'0')
			n++
		}
		appendLit(lit, byte(v))
		*nonASCII = *nonASCII || byte(v) == 0 || byte(v) >= 0x80
		return n, nil
	case c == 'x' && isHex(at(src, j+2)):
		n, v := j+2, 0
		for n < len(src) && n < j+4 && isHex(src[n]) {
			v = v*16 + hexVal(src[n])
			n++
		}
		appendLit(lit, byte(v))
		*nonASCII = *nonASCII || v == 0 || v >= 0x80
		return n, nil
	}
	appendLit(lit, unescape(c))
	*nonASCII = *nonASCII || c >= 0x80
	return j + 2, nil
}

// unicodeEscape reads \uXXXX or \UXXXXXXXX at j.
func unicodeEscape(src string, j int) (uint32, int, bool) {
	if at(src, j) != '\\' {
		return 0, 0, false
	}
	n := 4
	switch at(src, j+1) {
	case 'u':
	case 'U':
		n = 8
	default:
		return 0, 0, false
	}
	var r uint32
	for k := j + 2; k < j+2+n; k++ {
		if !isHex(at(src, k)) {
			return 0, 0, false
		}
		r = r*16 + uint32(hexVal(src[k]))
	}
	return r, j + 2 + n, true
}

func appendLit(lit *[]byte, b ...byte) {
	if lit != nil {
		*lit = append(*lit, b...)
	}
}

func unescape(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'v':
		return '\v'
	}
	return c
}

// validText reports whether an escape string's value is text the server
// accepts: valid UTF-8 without NUL.
func validText(b []byte) bool {
	for _, c := range b {
		if c == 0 {
			return false
		}
	}
	return utf8.Valid(b)
}

func isHex(c byte) bool { return isDigit(c) || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F') }

func hexVal(c byte) int {
	switch {
	case isDigit(c):
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return int(c-'A') + 10
}

// numeric reads the numeric constant at i (a digit, or . and a digit):
// decimal with _ between digits (1_000), 0x, 0o and 0b integers, decimals
// (1.5, 1., .5) and exponents (1e10, 2.5E-3). An identifier character
// right after one is an error ("trailing junk"), as are 0x without digits
// and 1e+ without any. 1..10 is 1, .. and 10.
func numeric(src string, i int) (token, *scanError) {
	junk := func() *scanError { return &scanError{pos: i, why: "trailing junk after numeric literal"} }
	if src[i] == '0' {
		var digit func(byte) bool
		switch at(src, i+1) {
		case 'x', 'X':
			digit = isHex
		case 'o', 'O':
			digit = func(c byte) bool { return '0' <= c && c <= '7' }
		case 'b', 'B':
			digit = func(c byte) bool { return c == '0' || c == '1' }
		}
		if digit != nil {
			from := i + 2
			if at(src, from) == '_' {
				from++ // 0x_1F
			}
			end := digits(src, from, digit)
			if end == from || isIdentCont(at(src, end)) {
				return token{}, junk()
			}
			return token{kind: number, start: i, end: end}, nil
		}
	}
	// The number's parts, each a run of digits: where an identifier could
	// start in or right after one (an _ in it, a letter after it) the
	// scanner's junk rules (1_000$ is 1 then the identifier _000$, 1e5x
	// is 1 then e5x) match from there to the end of the identifier; if
	// that is longer than the number, the number is junk.
	end := digits(src, i, isDigit)
	junkEnd := identAfter(src, i, end)
	if at(src, end) == '.' {
		if at(src, end+1) == '.' && end > i {
			return token{kind: number, start: i, end: end}, nil // 1..10
		}
		from := end + 1
		end = digits(src, from, isDigit)
		junkEnd = max(junkEnd, identAfter(src, from, end))
	}
	if c := at(src, end); c == 'e' || c == 'E' {
		k := end + 1
		sign := at(src, k) == '+' || at(src, k) == '-'
		if sign {
			k++
		}
		if m := digits(src, k, isDigit); m > k {
			end = m
			junkEnd = max(junkEnd, identAfter(src, k, end))
		} else if sign {
			return token{}, junk()
		}
	}
	if junkEnd > end {
		return token{}, junk()
	}
	return token{kind: number, start: i, end: end}, nil
}

// identAfter returns the end of the identifier that starts at the first _
// among the digits src[from:end], or else right after them; from when none
// does.
func identAfter(src string, from, end int) int {
	p := from + strings.IndexByte(src[from:end], '_')
	if p < from {
		p = end
	}
	if !isIdentStart(at(src, p)) {
		return from
	}
	for p++; p < len(src) && isIdentCont(src[p]); p++ {
	}
	return p
}

// digits returns the end of the run of digits from i, a single _ allowed
// between two of them; i when there is none.
func digits(src string, i int, digit func(byte) bool) int {
	if !digit(at(src, i)) {
		return i
	}
	j := i + 1
	for {
		switch {
		case j < len(src) && digit(src[j]):
			j++
		case at(src, j) == '_' && j+1 < len(src) && digit(src[j+1]):
			j += 2
		default:
			return j
		}
	}
}
