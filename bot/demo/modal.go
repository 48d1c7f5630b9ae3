package demo

import (
	"encoding/json"
	"fmt"
	"html"
	"strings"
)

// view is the part of a modal view (views.open) the page draws.
type view struct {
	Type       string   `json:"type"`
	CallbackID string   `json:"callback_id"`
	Title      *textObj `json:"title"`
	Submit     *textObj `json:"submit"`
	Close      *textObj `json:"close"`
	Blocks     []block  `json:"blocks"`
}

// inputElement is an input block's element; the page draws
// plain_text_input, single or multiline.
type inputElement struct {
	Type         string   `json:"type"`
	ActionID     string   `json:"action_id"`
	Placeholder  *textObj `json:"placeholder"`
	InitialValue string   `json:"initial_value"`
	Multiline    bool     `json:"multiline"`
	MaxLength    int      `json:"max_length"`
}

// RenderModal draws a modal view (the JSON of views.open's view) the way
// Slack shows it: its title, its blocks, and its close and submit buttons.
// As in Render, every text is escaped. Each input carries its block and
// action IDs, the IDs a view_submission's state is keyed by, and is
// followed by an empty, hidden place for the error Slack would show under
// it (response_action: errors).
func RenderModal(viewJSON []byte, names Names) (string, error) {
	var v view
	if err := json.Unmarshal(viewJSON, &v); err != nil {
		return "", fmt.Errorf("view: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<div class="bk-dialog bk-view" role="dialog" aria-modal="true" data-callback-id="%s">`+"\n", html.EscapeString(v.CallbackID))
	b.WriteString(`<h3 class="bk-view-title">` + names.text(v.Title) + "</h3>\n")
	b.WriteString(`<div class="bk-view-body">` + "\n")
	for _, bl := range v.Blocks {
		names.block(&b, bl)
	}
	b.WriteString("</div>\n")
	closeText := "Cancel" // Slack's, when the view names none
	if v.Close != nil {
		closeText = names.text(v.Close)
	}
	b.WriteString(`<div class="bk-dialog-buttons"><button type="button" class="bk-button bk-view-close">` + closeText + `</button>`)
	if v.Submit != nil {
		b.WriteString(`<button type="button" class="bk-button bk-primary bk-view-submit">` + names.text(v.Submit) + `</button>`)
	}
	b.WriteString("</div>\n</div>\n")
	return b.String(), nil
}

// input draws an input block: its label ("(optional)" after it when it
// is), the field, the place for its error, and its hint.
func (n Names) input(b *strings.Builder, bl block) {
	blockID := html.EscapeString(bl.BlockID)
	fmt.Fprintf(b, `<div class="bk-input" data-block-id="%s"><label class="bk-label">%s`, blockID, n.text(bl.Label))
	if bl.Optional {
		b.WriteString(` <span class="bk-optional">(optional)</span>`)
	}
	b.WriteString(`<br>`)
	e := bl.Element
	switch {
	case e == nil || e.Type != "plain_text_input":
		kind := "missing"
		if e != nil {
			kind = e.Type
		}
		b.WriteString(`<span class="bk-unknown">(a ` + html.EscapeString(kind) + " element)</span>")
	default:
		attrs := fmt.Sprintf(`class="bk-text-input" data-block-id="%s" data-action-id="%s"`, blockID, html.EscapeString(e.ActionID))
		if e.Placeholder != nil {
			attrs += ` placeholder="` + html.EscapeString(e.Placeholder.Text) + `"`
		}
		if e.MaxLength > 0 {
			attrs += fmt.Sprintf(` maxlength="%d"`, e.MaxLength)
		}
		if !bl.Optional {
			attrs += ` required`
		}
		if e.Multiline {
			b.WriteString(`<textarea ` + attrs + ` rows="4">` + html.EscapeString(e.InitialValue) + `</textarea>`)
		} else {
			b.WriteString(`<input type="text" ` + attrs + ` value="` + html.EscapeString(e.InitialValue) + `">`)
		}
	}
	b.WriteString(`</label><div class="bk-input-error" role="alert" hidden></div>`)
	if bl.Hint != nil {
		b.WriteString(`<div class="bk-hint">` + n.text(bl.Hint) + `</div>`)
	}
	b.WriteString("</div>\n")
}
