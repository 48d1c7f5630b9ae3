package redact

import (
	"strings"
	"testing"
)

// fuzzSecrets are planted in every literal and comment the fuzz generator
// writes; none may reach the output, whole or in part.
var fuzzSecrets = []string{"sk_live_PLANTED", "alice@example.com", "123-45-6789", "4111111111111111", "DEADBEEFCAFE"}

// FuzzSQL builds SQL around the fuzz input: the input chooses the tokens
// (identifiers, operators, quoted identifiers, and literals and comments of
// every kind) and fills literals and comments, each carrying a planted
// secret. SQL of the text, and of the text cut at every byte, must show no
// part of any secret.
func FuzzSQL(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		q := generate(data[:min(len(data), 512)]) // longer adds only time
		for i := len(q); i >= 0; i-- {
			if leak := fuzzLeak(SQL(q[:i])); leak != "" {
				t.Fatalf("SQL(%q) shows %q (full text %q)", q[:i], leak, q)
			}
		}
	})
}

// fuzzSeeds are generator inputs: each kind of fragment, glued and not.
var fuzzSeeds = []string{
	"", "\x00", "\x01abc", "\x02it's\\", "\x03$$", "\x04*/", "\x05\n", "\x06123", "\x07",
	"\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f", "\x10'\x11\"\x12\\\x13$\x14*\x15/",
	"\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00\x06\x00\x07\x00\x08\x00",
}

// fuzzLeak is leaked with a window long enough that the generator's fixed
// tokens never match it.
func fuzzLeak(out string) string {
	for _, s := range fuzzSecrets {
		for i := 0; i+6 <= len(s); i++ {
			if strings.Contains(out, s[i:i+6]) {
				return s[i : i+6]
			}
		}
	}
	return ""
}

// fixed are the generator's non-literal tokens, including the ones the
// lexer alone gets wrong.
var fixed = []string{
	"SELECT", "FROM", "WHERE", "a", "t.col", "E", "U&", "x", "b", "$1", "count(", ")", "(", ",",
	"=", "-", "+", "/", "*", "#", "::date", ".", "->>", "IN", `"q""i"`, `"/* x */"`, `"it's"`,
	`"a"."b"`, "NULL", "true", ";", "[", "]", "@", "|", "~",
}

// gen reads the fuzz input a byte at a time; past the end it reads zeros.
type gen struct {
	data []byte
	b    strings.Builder
}

func (g *gen) next() byte {
	if len(g.data) == 0 {
		return 0
	}
	c := g.data[0]
	g.data = g.data[1:]
	return c
}

// chunk takes up to 8 bytes of the input, as literal or comment text.
func (g *gen) chunk() string {
	n := int(g.next() % 9)
	n = min(n, len(g.data))
	s := string(g.data[:n])
	g.data = g.data[n:]
	return s
}

func (g *gen) secret() string { return fuzzSecrets[int(g.next())%4] }

func generate(data []byte) string {
	g := &gen{data: data}
	for steps := 0; len(g.data) > 0 && steps < 64; steps++ {
		op := g.next()
		// A separator: none only before a comment, which may follow any
		// token directly (a--x, col/*x*/), or before a number after a
		// character no identifier holds (a/5, @5, t.5).
		sep := [...]string{" ", "\n", "\t", " \r\n"}[op>>6]
		kind := op % 16
		s := g.b.String()
		glue := kind == 8 || kind == 9 || (kind == 10 && s != "" && !identChar(s[len(s)-1]))
		if glue && op&32 != 0 {
			sep = ""
		}
		g.b.WriteString(sep)
		g.fragment(kind)
	}
	return g.b.String()
}

// fragment writes one token of the given kind.
func (g *gen) fragment(kind byte) {
	b := &g.b
	switch kind {
	case 0, 1, 2:
		b.WriteString(fixed[int(g.next())%len(fixed)])
	case 3: // a plain string: ' doubled, backslashes as they come
		b.WriteString("'" + strings.ReplaceAll(g.chunk()+g.secret()+g.chunk(), "'", "''") + "'")
	case 4: // an escape string: ' and \ escaped, sometimes '' for '
		r := strings.NewReplacer(`\`, `\\`, `'`, [...]string{`\'`, `''`}[g.next()%2])
		b.WriteString([...]string{"E", "e"}[g.next()%2] + "'" + r.Replace(g.chunk()+g.secret()+g.chunk()) + "'")
	case 5: // a dollar quote, tagged or not
		tag := [...]string{"$$", "$tag$", "$a_1$", "$func$"}[g.next()%4]
		b.WriteString(tag + strings.ReplaceAll(g.chunk()+g.secret()+g.chunk(), "$", "S") + tag)
	case 6: // U&'', N''
		b.WriteString([...]string{"U&'", "u&'", "N'"}[g.next()%3] + strings.ReplaceAll(g.chunk()+g.secret(), "'", "''") + "'")
	case 7: // bit and hex strings
		if g.next()%2 == 0 {
			b.WriteString("X'DEADBEEFCAFE'")
		} else {
			b.WriteString("B'0101'")
		}
	case 8: // a block comment, sometimes nested
		text := strings.NewReplacer("*", "x", "/", "x").Replace(g.chunk() + g.secret() + g.chunk())
		if g.next()%2 == 0 {
			text = "/* " + text + " */ " + g.secret()
		}
		b.WriteString("/*" + text + "*/")
	case 9: // a line comment: PostgreSQL ends it at \n or \r
		b.WriteString("--" + strings.NewReplacer("\n", " ", "\r", " ").Replace(g.chunk()+g.secret()+g.chunk()) + "\n")
	case 10: // numbers, with the card number planted
		b.WriteString([...]string{"", "-", "+"}[g.next()%3])
		b.WriteString([...]string{"4111111111111111", "4_111_111_111_111_111", "0x4111111111111111",
			"4111111111111111.5", "4111111111111111e3", "0b4111111111111111", ".4111111111111111"}[g.next()%7])
	default:
		b.WriteString(fixed[int(g.next())%len(fixed)])
	}
}

// identChar reports whether PostgreSQL may continue an identifier with b.
func identChar(b byte) bool {
	return b == '_' || b == '$' || b >= 0x80 || ('0' <= b && b <= '9') || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z')
}
