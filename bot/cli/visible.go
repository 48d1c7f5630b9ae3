package cli

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Visible makes s safe to print on a terminal: every control character is
// shown as a Go escape (\n, \t, \x1b, \u009b), as are the bidirectional
// overrides that reorder what follows them and bytes that are not UTF-8.
// Query text, names and server messages come from whoever connects to the
// database: printed raw, an escape sequence could move the cursor and
// rewrite the "terminate pid …? [y/N]" line. Every text the command line
// prints from a database or from the user goes through here.
func Visible(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || hidden(r) {
			return true
		}
	}
	return false
}

// hidden: C1 controls (U+0080–U+009F, U+009B is a one-byte CSI on some
// terminals) and the bidirectional embeddings, overrides and isolates.
func hidden(r rune) bool {
	return (r >= 0x80 && r <= 0x9f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
