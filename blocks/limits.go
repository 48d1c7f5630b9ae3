package blocks

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// Violations checks a JSON array of blocks against Slack's Block Kit limits
// and returns one line per breach. It reads the JSON as Slack would, so the
// fake Slack in the bot's tests checks every message the bot sends with it.
func Violations(blocksJSON []byte) []string {
	var bs []map[string]any
	if err := json.Unmarshal(blocksJSON, &bs); err != nil {
		return []string{"blocks are not a JSON array of objects: " + err.Error()}
	}
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if len(bs) > MaxBlocks {
		bad("%d blocks, over %d", len(bs), MaxBlocks)
	}
	ids := map[string]bool{}
	for i, b := range bs {
		where := fmt.Sprintf("blocks[%d] (%v)", i, b["type"])
		if id, ok := b["block_id"].(string); ok {
			if utf8.RuneCountInString(id) > MaxID {
				bad("%s: block_id over %d", where, MaxID)
			}
			if ids[id] {
				bad("%s: duplicate block_id %q", where, id)
			}
			ids[id] = true
		}
		if t, ok := b["text"].(map[string]any); ok {
			limit := MaxText
			if b["type"] == "header" {
				limit = MaxHeader
			}
			checkText(where+".text", t, limit, bad)
		}
		elems, _ := b["elements"].([]any)
		if b["type"] == "context" && len(elems) > MaxContextElts {
			bad("%s: %d context elements, over %d", where, len(elems), MaxContextElts)
		}
		if b["type"] == "actions" && len(elems) > 25 {
			bad("%s: %d action elements, over 25", where, len(elems))
		}
		actionIDs := map[string]bool{}
		for j, e := range elems {
			em, _ := e.(map[string]any)
			ew := fmt.Sprintf("%s.elements[%d]", where, j)
			if em["type"] == "mrkdwn" || em["type"] == "plain_text" {
				checkText(ew, em, MaxText, bad)
				continue
			}
			if em["type"] != "button" {
				continue
			}
			if t, ok := em["text"].(map[string]any); ok {
				checkText(ew+".text", t, MaxButtonLabel, bad)
			}
			if v, _ := em["value"].(string); utf8.RuneCountInString(v) > MaxValue {
				bad("%s: value over %d", ew, MaxValue)
			}
			aid, _ := em["action_id"].(string)
			if utf8.RuneCountInString(aid) > MaxID {
				bad("%s: action_id over %d", ew, MaxID)
			}
			if actionIDs[aid] {
				bad("%s: duplicate action_id %q in one block", ew, aid)
			}
			actionIDs[aid] = true
			if c, ok := em["confirm"].(map[string]any); ok {
				for field, limit := range map[string]int{"title": 100, "text": 300, "confirm": 30, "deny": 30} {
					if t, ok := c[field].(map[string]any); ok {
						checkText(ew+".confirm."+field, t, limit, bad)
					}
				}
			}
		}
	}
	return out
}

func checkText(where string, t map[string]any, limit int, bad func(string, ...any)) {
	s, _ := t["text"].(string)
	n := utf8.RuneCountInString(s)
	if n == 0 {
		bad("%s: empty text", where)
	}
	if n > limit {
		bad("%s: %d characters, over %d", where, n, limit)
	}
}

// Slack rejects a message whose blocks hold too much text in total with
// msg_blocks_too_long, well before any single block's limit: users of
// Slack's own SDKs report it at about 12,000–13,000 characters. Slack does
// not document the figure, so pgkill keeps its own messages to
// MaxMessageText, a quarter under the lowest report, and the fake Slack of
// the bot's tests rejects at MessageTextLimit.
const (
	MessageTextLimit = 12000
	MaxMessageText   = 9000
)

// TextLength counts the characters (runes) of every text in a JSON array of
// blocks: section and context texts, headers, button labels, confirmations.
func TextLength(blocksJSON []byte) int {
	var v any
	if json.Unmarshal(blocksJSON, &v) != nil {
		return 0
	}
	return countText(v)
}

func countText(v any) int {
	n := 0
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			n += countText(e)
		}
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "text" {
				n += utf8.RuneCountInString(s)
				continue
			}
			n += countText(e)
		}
	}
	return n
}

// minQuery is the least query text worth showing of a backend.
const minQuery = 120

// fit renders a message with the longest query text per backend (at most
// hi characters) that keeps its total within MaxMessageText; ok says
// whether even minQuery characters fit.
func fit(hi int, render func(queryMax int) Message) (m Message, ok bool) {
	if m = render(hi); textLength(m) <= MaxMessageText {
		return m, true
	}
	lo := minQuery
	if m = render(lo); textLength(m) > MaxMessageText {
		return m, false
	}
	for hi-lo > 10 { // the longest that fits, within 10 characters
		mid := (lo + hi) / 2
		if textLength(render(mid)) <= MaxMessageText {
			lo = mid
		} else {
			hi = mid
		}
	}
	return render(lo), true
}

// textLength is TextLength of a message's blocks.
func textLength(m Message) int {
	raw, err := json.Marshal(m.Blocks)
	if err != nil {
		return 0
	}
	return TextLength(raw)
}

// bound keeps a message of many similar blocks (a doctor report of many
// targets) within MaxMessageText: it drops blocks from the end and says
// how many were left out.
func bound(m Message) Message {
	if textLength(m) <= MaxMessageText {
		return m
	}
	all := m.Blocks
	for n := len(all) - 1; n > 0; n-- {
		m.Blocks = append(append([]slack.Block(nil), all[:n]...),
			contextLine("cut", fmt.Sprintf(":scissors: %d more not shown: the message would be too long for Slack.", len(all)-n)))
		if textLength(m) <= MaxMessageText {
			return m
		}
	}
	return m
}
