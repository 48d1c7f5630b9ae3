package blocks

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// Message is a Slack message: the notification text and the blocks.
type Message struct {
	Text   string        `json:"text"`
	Blocks []slack.Block `json:"blocks"`
}

// Block Kit limits (Slack's docs): a message over them is rejected whole.
const (
	MaxBlocks      = 50
	MaxText        = 3000
	MaxHeader      = 150
	MaxButtonLabel = 75
	MaxValue       = 2000
	MaxID          = 255
	MaxContextElts = 10
)

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, Truncate(s, MaxText), false, false)
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

func section(id, text string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(text), nil, nil, slack.SectionBlockOptionBlockID(id))
}

func contextLine(id, text string) *slack.ContextBlock {
	return slack.NewContextBlock(id, mrkdwn(text))
}

func header(text string) *slack.HeaderBlock {
	return slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, Truncate(text, MaxHeader), true, false))
}

func button(actionID, label, value string, style slack.Style) *slack.ButtonBlockElement {
	b := slack.NewButtonBlockElement(actionID, value, plain(Truncate(label, MaxButtonLabel)))
	if style != "" {
		b = b.WithStyle(style)
	}
	return b
}

// inline shows a user-controlled name as code: escaped, and with backticks
// replaced so they cannot end the code span.
func inline(s string) string {
	if s == "" {
		return "–"
	}
	return "`" + Escape(strings.ReplaceAll(s, "`", "ˋ")) + "`"
}

// codeBlock shows text (a query) as a code block of at most max characters,
// escaped; backticks are replaced so they cannot end the block.
func codeBlock(text string, max int) string {
	return "```" + escapeTruncate(strings.ReplaceAll(strings.TrimSpace(text), "`", "ˋ"), max-6) + "```"
}

// escapeTruncate escapes s for mrkdwn and cuts the result (not the input)
// to at most max characters, so entities cannot push it over a limit.
func escapeTruncate(s string, max int) string {
	if full := Escape(s); utf8.RuneCountInString(full) <= max {
		return full
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		piece := Escape(string(r))
		w := utf8.RuneCountInString(piece)
		if n+w > max-1 { // keep room for the ellipsis
			break
		}
		b.WriteString(piece)
		n += w
	}
	return b.String() + "…"
}

// slackDate renders t in each reader's own time zone, with a UTC fallback.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time_secs}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// mention renders a Slack user (U…/W…) or user group (S…) ID.
func mention(id string) string {
	if rule, ok := strings.CutPrefix(id, "autopilot:"); ok { // request.Auto.Actor: a rule, not a person
		return "autopilot rule " + inline(rule)
	}
	if strings.HasPrefix(id, "S") {
		return "<!subteam^" + id + ">"
	}
	return "<@" + id + ">"
}

// Mentions renders several IDs.
func Mentions(ids []string) string {
	var parts []string
	for _, id := range ids {
		parts = append(parts, mention(id))
	}
	return strings.Join(parts, " ")
}

// revise makes every block_id of m unique to this revision of the message:
// Slack asks for new block_ids when a message is updated, and clients may
// otherwise keep showing the old blocks (buttons that should be gone).
func revise(m Message, at time.Time, state string) Message {
	rev := strconv.FormatInt(at.Unix(), 36)
	if state != "" {
		rev = state + "." + rev
	}
	for _, b := range m.Blocks {
		switch b := b.(type) {
		case *slack.SectionBlock:
			b.BlockID = revised(b.BlockID, rev)
		case *slack.ContextBlock:
			b.BlockID = revised(b.BlockID, rev)
		case *slack.ActionBlock:
			b.BlockID = revised(b.BlockID, rev)
		}
	}
	return m
}

func revised(id, rev string) string {
	if id == "" {
		return id
	}
	return Truncate(id+"."+rev, MaxID)
}
