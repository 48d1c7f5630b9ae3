package demo

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"
)

// block is the part of a Block Kit block the page draws.
type block struct {
	Type      string    `json:"type"`
	BlockID   string    `json:"block_id"`
	Text      *textObj  `json:"text"`
	Fields    []textObj `json:"fields"`
	Elements  []element `json:"elements"`
	Accessory *element  `json:"accessory"`
	ImageURL  string    `json:"image_url"`
	AltText   string    `json:"alt_text"`
	// An input block's (in a modal).
	Label    *textObj      `json:"label"`
	Hint     *textObj      `json:"hint"`
	Optional bool          `json:"optional"`
	Element  *inputElement `json:"element"`
}

type textObj struct {
	Type  string `json:"type"` // plain_text or mrkdwn
	Text  string `json:"text"`
	Emoji bool   `json:"emoji"`
}

// element is a context or actions element: a text, an image or a button.
type element struct {
	textObj
	ActionID string   `json:"action_id"`
	Value    string   `json:"value"`
	URL      string   `json:"url"`
	Style    string   `json:"style"`
	Label    *textObj `json:"text"`
	Confirm  *confirm `json:"confirm"`
	ImageURL string   `json:"image_url"`
	AltText  string   `json:"alt_text"`
}

// UnmarshalJSON splits "text": a string on a context element, a text
// object on a button.
func (e *element) UnmarshalJSON(data []byte) error {
	type plain element
	var raw struct {
		plain
		Text json.RawMessage `json:"text"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*e = element(raw.plain)
	if len(raw.Text) > 0 && raw.Text[0] == '"' {
		return json.Unmarshal(raw.Text, &e.textObj.Text)
	}
	if len(raw.Text) > 0 && string(raw.Text) != "null" {
		e.Label = new(textObj)
		return json.Unmarshal(raw.Text, e.Label)
	}
	return nil
}

type confirm struct {
	Title   textObj `json:"title"`
	Text    textObj `json:"text"`
	Confirm textObj `json:"confirm"`
	Deny    textObj `json:"deny"`
	Style   string  `json:"style"`
}

// Render draws a message's blocks (a JSON array) as HTML the way Slack
// shows them. Every piece of text is escaped: nothing in a message can
// inject markup into the page. Buttons carry their action ID, block ID and
// value as data attributes; a confirm dialog follows its button, hidden.
func Render(blocksJSON []byte, names Names) (string, error) {
	var bs []block
	if len(blocksJSON) == 0 || string(blocksJSON) == "null" {
		return "", nil
	}
	if err := json.Unmarshal(blocksJSON, &bs); err != nil {
		return "", fmt.Errorf("blocks: %w", err)
	}
	var b strings.Builder
	for _, bl := range bs {
		names.block(&b, bl)
	}
	return b.String(), nil
}

func (n Names) block(b *strings.Builder, bl block) {
	switch bl.Type {
	case "header":
		b.WriteString(`<h3 class="bk-header">` + n.text(bl.Text) + "</h3>\n")
	case "section":
		b.WriteString(`<div class="bk-section"><div class="bk-body">`)
		if bl.Text != nil {
			b.WriteString(`<div class="bk-text">` + n.text(bl.Text) + `</div>`)
		}
		if len(bl.Fields) > 0 {
			b.WriteString(`<div class="bk-fields">`)
			for i := range bl.Fields {
				b.WriteString(`<div class="bk-field">` + n.text(&bl.Fields[i]) + `</div>`)
			}
			b.WriteString(`</div>`)
		}
		b.WriteString(`</div>`)
		if bl.Accessory != nil {
			n.element(b, bl.BlockID, *bl.Accessory)
		}
		b.WriteString("</div>\n")
	case "divider":
		b.WriteString("<hr class=\"bk-divider\">\n")
	case "context":
		b.WriteString(`<div class="bk-context">`)
		for _, e := range bl.Elements {
			n.element(b, bl.BlockID, e)
		}
		b.WriteString("</div>\n")
	case "actions":
		b.WriteString(`<div class="bk-actions" data-block-id="` + html.EscapeString(bl.BlockID) + `">`)
		for _, e := range bl.Elements {
			n.element(b, bl.BlockID, e)
		}
		b.WriteString("</div>\n")
	case "image":
		b.WriteString(image(bl.ImageURL, bl.AltText) + "\n")
	case "input":
		n.input(b, bl)
	default:
		b.WriteString(`<div class="bk-unknown">(a ` + html.EscapeString(bl.Type) + " block, which this page does not draw)</div>\n")
	}
}

// text renders a text object: mrkdwn formatted, plain_text as it is.
func (n Names) text(t *textObj) string {
	if t == nil {
		return ""
	}
	if t.Type == "mrkdwn" {
		return n.mrkdwn(t.Text)
	}
	return html.EscapeString(t.Text)
}

func (n Names) element(b *strings.Builder, blockID string, e element) {
	switch e.Type {
	case "mrkdwn", "plain_text":
		b.WriteString(`<span class="bk-el">` + n.text(&e.textObj) + `</span>`)
	case "image":
		b.WriteString(image(e.ImageURL, e.AltText))
	case "button":
		n.button(b, blockID, e)
	default:
		b.WriteString(`<span class="bk-unknown">(a ` + html.EscapeString(e.Type) + " element)</span>")
	}
}

func (n Names) button(b *strings.Builder, blockID string, e element) {
	class := "bk-button"
	if e.Style == "primary" || e.Style == "danger" {
		class += " bk-" + e.Style
	}
	if e.URL != "" && safeURL(e.URL) {
		b.WriteString(`<a class="` + class + `" href="` + html.EscapeString(e.URL) + `" rel="noopener noreferrer" target="_blank">` + n.text(e.Label) + `</a>`)
		return
	}
	fmt.Fprintf(b, `<button type="button" class="%s" data-action-id="%s" data-block-id="%s" data-value="%s">%s</button>`,
		class, html.EscapeString(e.ActionID), html.EscapeString(blockID), html.EscapeString(e.Value), n.text(e.Label))
	if c := e.Confirm; c != nil {
		ok := "bk-button"
		if c.Style == "danger" || c.Style == "primary" {
			ok += " bk-" + c.Style
		}
		fmt.Fprintf(b, `<div class="bk-confirm" hidden><div class="bk-dialog"><h3>%s</h3><p>%s</p><div class="bk-dialog-buttons">`+
			`<button type="button" class="bk-button bk-deny">%s</button><button type="button" class="%s bk-ok">%s</button></div></div></div>`,
			n.text(&c.Title), n.text(&c.Text), n.text(&c.Deny), ok, n.text(&c.Confirm))
	}
}

func image(url, alt string) string {
	if !safeURL(url) {
		return `<span class="bk-image">[` + html.EscapeString(alt) + `]</span>`
	}
	return `<img class="bk-image" src="` + html.EscapeString(url) + `" alt="` + html.EscapeString(alt) + `">`
}
