package demo

import (
	"html"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Names shows Slack IDs as people would see them: user IDs (U…) as
// display names, user groups (S…) as handles, channels (C…) as names. An
// unknown ID is shown as itself.
type Names map[string]string

func (n Names) of(id string) string {
	if name, ok := n[id]; ok {
		return name
	}
	return id
}

// mrkdwn renders Slack's mrkdwn: ```code blocks```, `code`, *bold*,
// _italic_, ~strike~, :emoji:, <links> and newlines. Slack escapes only
// &, < and > in message text; they are unescaped here and every piece of
// text is HTML-escaped again on its way out, so no text can inject markup.
func (n Names) mrkdwn(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	var b strings.Builder
	for {
		i := strings.Index(s, "```")
		if i < 0 {
			break
		}
		j := strings.Index(s[i+3:], "```")
		if j < 0 {
			break
		}
		b.WriteString(n.inline(s[:i]))
		b.WriteString(`<pre class="bk-pre">`)
		b.WriteString(html.EscapeString(unslack(strings.Trim(s[i+3:i+3+j], "\n"))))
		b.WriteString(`</pre>`)
		s = s[i+3+j+3:]
	}
	b.WriteString(n.inline(s))
	return b.String()
}

// inline renders text without code blocks. Code spans and <…> tokens become
// placeholders (NUL n NUL) while emphasis is applied to the escaped rest, so
// markers inside them are left alone.
func (n Names) inline(s string) string {
	var held []string
	var b strings.Builder
	hold := func(h string) {
		b.WriteString("\x00" + strconv.Itoa(len(held)) + "\x00")
		held = append(held, h)
	}
	text := func(t string) { b.WriteString(html.EscapeString(unslack(t))) }
	for len(s) > 0 {
		i := strings.IndexAny(s, "<`")
		if i < 0 {
			text(s)
			break
		}
		text(s[:i])
		s = s[i:]
		closer := ">"
		if s[0] == '`' {
			closer = "`"
		}
		j := strings.Index(s[1:], closer)
		if j < 0 || (closer == ">" && strings.ContainsAny(s[1:1+j], "<\n")) {
			text(s[:1])
			s = s[1:]
			continue
		}
		inner := s[1 : 1+j]
		if closer == "`" {
			hold(`<code>` + html.EscapeString(unslack(inner)) + `</code>`)
		} else {
			hold(n.token(inner))
		}
		s = s[2+j:]
	}
	out := b.String()
	for _, m := range []struct {
		mark byte
		tag  string
	}{{'*', "b"}, {'_', "i"}, {'~', "s"}} {
		out = emphasis(out, m.mark, m.tag)
	}
	out = emojiRe.ReplaceAllStringFunc(out, func(e string) string {
		if r, ok := emoji[e[1:len(e)-1]]; ok {
			return r
		}
		return e
	})
	out = strings.ReplaceAll(out, "\n", "<br>")
	return heldRe.ReplaceAllStringFunc(out, func(p string) string {
		k, _ := strconv.Atoi(p[1 : len(p)-1])
		return held[k]
	})
}

var heldRe = regexp.MustCompile("\x00[0-9]+\x00")

// token renders the inside of <…>: a mention, a user group, a channel, a
// special mention, a date, or a link.
func (n Names) token(t string) string {
	label := ""
	if k := strings.IndexByte(t, '|'); k >= 0 {
		t, label = t[:k], t[k+1:]
	}
	span := func(class, s string) string {
		return `<span class="` + class + `">` + html.EscapeString(unslack(s)) + `</span>`
	}
	switch {
	case strings.HasPrefix(t, "@"):
		return span("bk-mention", "@"+n.of(t[1:]))
	case strings.HasPrefix(t, "#"):
		if label == "" {
			label = n.of(t[1:])
		}
		return span("bk-mention", "#"+label)
	case strings.HasPrefix(t, "!subteam^"):
		if label == "" {
			label = n.of(strings.TrimPrefix(t, "!subteam^"))
		}
		return span("bk-mention", "@"+strings.TrimPrefix(label, "@"))
	case strings.HasPrefix(t, "!date^"):
		parts := strings.Split(t, "^")
		return `<time class="bk-date" data-ts="` + html.EscapeString(parts[1]) + `">` + html.EscapeString(unslack(label)) + `</time>`
	case strings.HasPrefix(t, "!"):
		return span("bk-mention", "@"+t[1:])
	}
	url := unslack(t)
	if label == "" {
		label = t
	}
	if !safeURL(url) {
		return html.EscapeString(unslack(label))
	}
	return `<a href="` + html.EscapeString(url) + `" rel="noopener noreferrer" target="_blank">` + html.EscapeString(unslack(label)) + `</a>`
}

// safeURL admits only the schemes Slack links to; a javascript: URL would
// run in the page.
func safeURL(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "mailto:")
}

// unslack undoes Slack's three escapes, in one pass so that "&amp;lt;"
// stays "&lt;".
var unslack = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace

// emphasis wraps mark…mark in tag where Slack would: the opening mark
// starts a word, the closing one ends it, neither touches a space, and both
// are on one line.
func emphasis(s string, mark byte, tag string) string {
	var b strings.Builder
	i := 0
	for i < len(s) {
		if s[i] != mark || (i > 0 && wordByte(s[i-1])) || i+1 >= len(s) || s[i+1] == ' ' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i + 1
		for j < len(s) && s[j] != '\n' && !(s[j] == mark && s[j-1] != ' ' && j > i+1 && (j+1 == len(s) || !wordByte(s[j+1]))) {
			j++
		}
		if j >= len(s) || s[j] != mark {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString("<" + tag + ">" + emphasis(s[i+1:j], mark, tag) + "</" + tag + ">")
		i = j + 1
	}
	return b.String()
}

func wordByte(c byte) bool {
	return c >= 0x80 || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c))
}

var emojiRe = regexp.MustCompile(`:[a-z0-9_+-]+:`)

// emoji are the ones pgkill's messages use; others stay as :name:.
var emoji = map[string]string{
	"fire": "🔥", "gear": "⚙️", "hourglass": "⌛", "information_source": "ℹ️", "large_green_circle": "🟢",
	"leftwards_arrow_with_hook": "↩️", "link": "🔗", "lock": "🔒", "no_entry": "⛔", "no_entry_sign": "🚫", "raised_hand": "✋",
	"red_circle": "🔴", "rotating_light": "🚨", "stopwatch": "⏱️", "warning": "⚠️", "white_check_mark": "✅", "x": "❌",
}
