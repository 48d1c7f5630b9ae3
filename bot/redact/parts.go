package redact

import "strings"

// dropPrefix removes from the output the marker glued to the string
// constant at pos (E'…', U&'…', B'…', X'…', N'…'): the marker belongs to the
// literal. It reports whether the constant is an escape string (E'…'), whose
// backslashes the lexer has already read as escapes.
func (r *redactor) dropPrefix(pos int) (escape bool) {
	if pos == 0 || strings.IndexByte("EeUuBbXxNn&", r.src[pos-1]) < 0 {
		return false
	}
	for _, p := range [...]string{"U&", "u&", "E", "e", "B", "b", "X", "x", "N", "n"} {
		start := pos - len(p)
		if start < 0 || r.src[start:pos] != p || (start > 0 && identByte(r.src[start-1])) {
			continue
		}
		if len(r.out) < len(p) || string(r.out[len(r.out)-len(p):]) != p {
			continue
		}
		r.out = r.out[:len(r.out)-len(p)]
		return p == "E" || p == "e"
	}
	return false
}

// number writes the placeholder for the number src[pos:end]. The lexer
// reads a sign as part of a number; after a value the sign is an operator
// (a-5), so it stays. Letters, digits and _ glued to a number are part of
// it (0b1010, 0o17, 1_000_000, 0x1F_FF: PostgreSQL 16 syntax the lexer does
// not know), so they are hidden too; a $ is not (1$$a$$ is a number and a
// dollar quote).
func (r *redactor) number(v string, pos, end int) int {
	if (v[0] == '-' || v[0] == '+') && r.value {
		r.out = append(r.out, v[0])
	}
	r.literal()
	for end < len(r.src) && identByte(r.src[end]) && r.src[end] != '$' {
		end++
	}
	return end
}

// comment drops the /* */ comment at pos, which PostgreSQL lets nest, and
// returns its end; an unterminated comment runs to the end of the text.
func (r *redactor) comment(pos int) int {
	depth := 0
	for i := pos; i+1 < len(r.src); i++ {
		switch r.src[i : i+2] {
		case "/*":
			depth++
			i++
		case "*/":
			depth--
			i++
			if depth == 0 {
				r.separate(i + 1)
				return i + 1
			}
		}
	}
	return len(r.src)
}

// separate keeps the tokens around a dropped comment apart with one space
// (a/**/b is a b; a /**/ b is not a   b).
func (r *redactor) separate(next int) {
	if len(r.out) == 0 || next >= len(r.src) {
		return
	}
	switch last := r.out[len(r.out)-1]; {
	case !space(last) && !space(r.src[next]):
		r.out = append(r.out, ' ')
	case last == ' ' && space(r.src[next]):
		r.out = r.out[:len(r.out)-1]
	}
}

// quotedIdent writes the quoted identifier at pos, where "" is one quote,
// and returns its end. An unterminated one hides the rest: it may be
// something else cut short.
func (r *redactor) quotedIdent(pos int) int {
	for i := pos + 1; i < len(r.src); i++ {
		if r.src[i] != '"' {
			continue
		}
		if i+1 < len(r.src) && r.src[i+1] == '"' {
			i++
			continue
		}
		r.out = append(r.out, r.src[pos:i+1]...)
		r.value = true
		return i + 1
	}
	return r.hideRest()
}

// backslashQuote reports whether the plain string constant v has a quote
// escaped by a backslash (an odd run of backslashes before it), which is
// read differently when standard_conforming_strings is off.
func backslashQuote(v string) bool {
	run := 0
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			run++
			continue
		case '\'':
			if run%2 == 1 {
				return true
			}
		}
		run = 0
	}
	return false
}

// identByte reports whether b may continue an identifier or a number.
func identByte(b byte) bool {
	return b == '_' || b == '$' || b >= 0x80 || ('0' <= b && b <= '9') || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z')
}

func space(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' }
