package redact

import "strings"

// mark says what to do with each token: constants are hidden; so are the
// values of settings, which the grammar takes as words (SET search_path TO
// app, secret; SET app.key = sk_live_x); DO and function bodies are
// redacted as text of their own.
func mark(src string, toks []token, depth int) marks {
	m := marks{hide: make([]bool, len(toks))}
	r := reader{src: src, toks: toks, m: &m, depth: depth, sig: make([]int, 0, len(toks))}
	for i, t := range toks {
		m.hide[i] = t.kind.constant()
		if t.kind != space && t.kind != comment {
			r.sig = append(r.sig, i)
		}
	}
	for k := 0; k < len(r.sig); {
		end := k
		for end < len(r.sig) && r.text(end) != ";" {
			end++
		}
		r.statement(k, end)
		k = end + 1
	}
	return m
}

// reader walks the significant tokens (neither space nor comment) of a
// text, statement by statement; positions are indexes into sig.
type reader struct {
	src   string
	toks  []token
	sig   []int
	m     *marks
	depth int
}

func (r *reader) tok(k int) token {
	if k < 0 || k >= len(r.sig) {
		return token{kind: space}
	}
	return r.toks[r.sig[k]]
}

func (r *reader) text(k int) string {
	t := r.tok(k)
	return r.src[t.start:t.end]
}

// word returns the token at k in lower case if it is a plain identifier or
// keyword, else "".
func (r *reader) word(k int) string {
	t := r.tok(k)
	if !r.plainWord(t) {
		return ""
	}
	return strings.ToLower(r.src[t.start:t.end])
}

// is reports whether the token at k is one of the words (in lower case),
// without the allocation of word.
func (r *reader) is(k int, words ...string) bool {
	t := r.tok(k)
	if !r.plainWord(t) {
		return false
	}
	for _, w := range words {
		if strings.EqualFold(r.src[t.start:t.end], w) {
			return true
		}
	}
	return false
}

// plainWord: t is an identifier or keyword neither quoted nor U&"…".
func (r *reader) plainWord(t token) bool {
	return t.kind == ident && r.src[t.start] != '"' && !(t.end-t.start > 2 && r.src[t.start+1] == '&')
}

// statement reads the statement from k to end (its semicolon or the end of
// the text).
func (r *reader) statement(k, end int) {
	depth := 0
	for p := k; p < end; p++ {
		switch r.text(p) {
		case "(":
			depth++
		case ")":
			depth--
		}
		// After these a PL/pgSQL statement begins (BEGIN SET …; THEN SET
		// …), as one does after a semicolon.
		if p == k || r.is(p-1, "begin", "then", "else", "loop", "atomic") {
			r.start(p, end)
		}
		if r.is(p, "do") {
			r.doBody(p, end)
		}
	}
}

// start reads the statement that begins at p.
func (r *reader) start(p, end int) {
	switch r.word(p) {
	case "set":
		r.set(p+1, end)
	case "alter":
		switch r.word(p + 1) {
		case "role", "user", "database", "system":
			// ALTER ROLE r [IN DATABASE d] SET name TO value: the value runs
			// to the end of the statement.
			if s := r.find(p+2, end, "set"); s >= 0 {
				if v := r.findValue(s+1, end); v >= 0 {
					r.hideFrom(v, end)
				}
			}
		case "function", "procedure", "routine":
			r.functionSets(p+2, end)
		}
	case "create":
		q := p + 1
		if r.word(q) == "or" && r.word(q+1) == "replace" {
			q += 2
		}
		if w := r.word(q); w == "function" || w == "procedure" {
			r.functionSets(q+1, end)
			r.functionBody(q+1, end)
		}
	}
}

// set reads a SET statement from q, after SET: its value (after = or TO,
// or after TIME ZONE, ROLE, SESSION AUTHORIZATION, NAMES, SCHEMA, CATALOG,
// XML OPTION) runs to the end of the statement.
func (r *reader) set(q, end int) {
	if w := r.word(q); w == "session" || w == "local" {
		q++
	}
	switch r.word(q) {
	case "time":
		if r.word(q+1) == "zone" {
			r.hideFrom(q+2, end)
		}
	case "role", "authorization", "names", "schema", "catalog":
		r.hideFrom(q+1, end)
	case "session":
		if r.word(q+1) == "authorization" {
			r.hideFrom(q+2, end)
		}
	case "xml":
		if r.word(q+1) == "option" {
			r.hideFrom(q+2, end)
		}
	case "transaction", "constraints", "characteristics":
	default:
		if v := r.findValue(q, end); v >= 0 {
			r.hideFrom(v, end)
		}
	}
}

// functionSets hides the values of a function's SET clauses (SET name TO
// value, value …) in the statement from q to end. Other clauses follow
// them, so each value is one token, with its sign.
func (r *reader) functionSets(q, end int) {
	for s := r.find(q, end, "set"); s >= 0; s = r.find(s+1, end, "set") {
		v := s + 1
		for v < end && (r.tok(v).kind == ident || r.text(v) == ".") && !r.is(v, "to") {
			v++
		}
		if r.text(v) != "=" && !r.is(v, "to") {
			continue
		}
		for v++; v < end; v++ {
			if t := r.text(v); t == "+" || t == "-" {
				r.hide(v)
				v++
			}
			r.hide(v)
			if r.text(v+1) != "," {
				break
			}
			v++
		}
	}
}

// find returns the first position from q to end, outside parentheses,
// holding the word w; -1 if none.
func (r *reader) find(q, end int, w string) int {
	depth := 0
	for p := q; p < end; p++ {
		switch r.text(p) {
		case "(":
			depth++
		case ")":
			depth--
		}
		if depth == 0 && r.is(p, w) {
			return p
		}
	}
	return -1
}

// findValue returns the position after the first = or TO from q to end; -1
// if none.
func (r *reader) findValue(q, end int) int {
	for p := q; p < end; p++ {
		if r.text(p) == "=" || r.is(p, "to") {
			return p + 1
		}
	}
	return -1
}

// hideFrom hides every token from q to end but commas.
func (r *reader) hideFrom(q, end int) {
	for p := q; p < end; p++ {
		if r.text(p) != "," {
			r.hide(p)
		}
	}
}

func (r *reader) hide(p int) {
	if p >= 0 && p < len(r.sig) {
		r.m.hide[r.sig[p]] = true
	}
}
