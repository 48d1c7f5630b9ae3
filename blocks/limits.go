package blocks

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
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
