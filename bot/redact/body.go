package redact

import "strings"

// doBody reads DO [LANGUAGE l] body [LANGUAGE l] at p. A PL/pgSQL body (the
// default) is redacted as text of its own. When the text ends right after
// the body, a LANGUAGE clause may have been cut off, so the body is read
// only if it has PL/pgSQL's shape (BEGIN … END): a block in another
// language (DO $$ x = "secret" $$ LANGUAGE plpython3u) would keep its
// double-quoted strings, which SQL reads as identifiers.
func (r *reader) doBody(p, end int) {
	q, lang := p+1, ""
	if r.word(q) == "language" {
		lang, q = r.name(q+1), q+2
		if lang == "" {
			return
		}
	}
	b := r.tok(q)
	if q >= end || b.kind != str {
		return
	}
	switch {
	case r.word(q+1) == "language":
		lang = r.name(q + 2)
	case q+1 < end: // something else follows: not a DO block
		return
	case lang == "" && q+1 == len(r.sig) && !plpgsqlShaped(r.inner(b)):
		return
	}
	if lang == "plpgsql" || (lang == "" && r.word(q+1) != "language") {
		r.body(r.sig[q])
	}
}

// functionBody reads the body of CREATE FUNCTION or PROCEDURE from q to
// end: AS 'body' or AS $$body$$, in SQL or PL/pgSQL as its LANGUAGE clause
// says. Without one (cut off) it stays hidden.
func (r *reader) functionBody(q, end int) {
	l := r.find(q, end, "language")
	a := r.find(q, end, "as")
	if l < 0 || a < 0 || a+1 >= end || r.tok(a+1).kind != str || r.text(a+2) == "," {
		return
	}
	if lang := r.name(l + 1); lang == "sql" || lang == "plpgsql" {
		r.body(r.sig[a+1])
	}
}

// name returns the language name at k: a word in lower case, a quoted
// identifier or a plain string as written.
func (r *reader) name(k int) string {
	if w := r.word(k); w != "" {
		return w
	}
	t := r.tok(k)
	if (t.kind == ident && r.src[t.start] == '"') || (t.kind == str && t.plain && r.src[t.start] == '\'') {
		return r.src[t.start+1 : t.end-1]
	}
	return ""
}

// body redacts the string token i as SQL (or PL/pgSQL, whose scanner is
// SQL's) and shows it in its quotes. Only a dollar quote or a plain '…'
// (no prefix, no continuation) can be read back exactly; any other stays
// hidden, as does a body nested too deep.
func (r *reader) body(i int) {
	t := r.toks[i]
	if !t.plain || r.depth+1 > maxDepth {
		return
	}
	text := r.src[t.start:t.end]
	inner := redactText(r.inner(t), r.depth+1)
	if text[0] == '\'' {
		r.setBody(i, "'"+strings.ReplaceAll(inner, "'", "''")+"'")
		return
	}
	delim := text[:strings.IndexByte(text[1:], '$')+2]
	r.setBody(i, delim+inner+delim)
}

func (r *reader) setBody(i int, text string) {
	if r.m.body == nil {
		r.m.body = map[int]string{}
	}
	r.m.body[i] = text
}

// inner returns the text of the plain string t: a dollar quote's body, or
// a '…' with its doubled quotes read as one.
func (r *reader) inner(t token) string {
	text := r.src[t.start:t.end]
	if text[0] == '\'' {
		return strings.ReplaceAll(text[1:len(text)-1], "''", "'")
	}
	n := strings.IndexByte(text[1:], '$') + 2
	return text[n : len(text)-n]
}

// plpgsqlShaped reports whether body reads as a PL/pgSQL block: [<<label>>]
// [DECLARE …] BEGIN … END [label] [;].
func plpgsqlShaped(body string) bool {
	toks, err := scan(body)
	if err != nil {
		return false
	}
	var words []string
	for _, t := range toks {
		if t.kind != space && t.kind != comment {
			words = append(words, strings.ToLower(body[t.start:t.end]))
		}
	}
	if len(words) < 2 {
		return false
	}
	if w := words[0]; w != "begin" && w != "declare" && w != "<<" {
		return false
	}
	n := len(words)
	if words[n-1] == ";" {
		n--
	}
	return n >= 2 && (words[n-1] == "end" || words[n-2] == "end")
}
