package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/pgkill/pgkill/bot/localslack"
)

// ackWait bounds how long a submission waits for the bot's ack: Slack
// gives up after 3 s; the page waits longer so that a slow machine shows
// the bot's answer rather than a timeout of its own.
const ackWait = 10 * time.Second

// views remembers which modals the page's visitors have submitted or
// closed, and the errors the bot's ack put under their inputs. A modal the
// local Slack opened for someone is open until then, or until a newer one
// opens for them (Slack shows one at a time).
type views struct {
	mu     sync.Mutex
	states map[string]*viewState // by the trigger ID that opened the modal
}

type viewState struct {
	done   bool              // submitted and accepted, or closed
	busy   bool              // a submission waits for its ack
	errors map[string]string // block ID → error, from the last ack
}

// shownModal is the modal a person has open, as the page draws it.
type shownModal struct {
	ID     string            `json:"id"`
	HTML   string            `json:"html"`
	Errors map[string]string `json:"errors"`
}

func (v *views) state(id string) *viewState {
	if v.states == nil {
		v.states = map[string]*viewState{}
	}
	st, ok := v.states[id]
	if !ok {
		st = &viewState{}
		v.states[id] = st
	}
	return st
}

// open returns the modal open for person: the newest opened for them,
// unless it was submitted or closed.
func (p *Page) open(person string) (localslack.Modal, bool) {
	ms := p.slack.Modals(person)
	if len(ms) == 0 {
		return localslack.Modal{}, false
	}
	m := ms[len(ms)-1]
	p.views.mu.Lock()
	defer p.views.mu.Unlock()
	return m, !p.views.state(m.TriggerID).done
}

// shownModal draws person's open modal, nil when none is.
func (p *Page) shownModal(person string) *shownModal {
	m, ok := p.open(person)
	if !ok {
		return nil
	}
	html, err := RenderModal(m.View, p.names)
	if err != nil {
		html = `<div class="bk-dialog bk-view"><p class="bk-unknown">(a view this page cannot draw)</p>` +
			`<div class="bk-dialog-buttons"><button type="button" class="bk-button bk-view-close">Close</button></div></div>`
	}
	p.views.mu.Lock()
	defer p.views.mu.Unlock()
	errs := map[string]string{}
	for k, e := range p.views.state(m.TriggerID).errors {
		errs[k] = e
	}
	return &shownModal{ID: m.TriggerID, HTML: html, Errors: errs}
}

// submit sends the values typed into the person's open modal to the bot,
// as Slack does (a view_submission envelope), and answers with the errors
// of the bot's ack: response_action "errors" keeps the form open with
// them; an empty ack (or any other response_action: pgkill sends no
// other) closes it.
func (p *Page) submit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		As, Modal string
		Values    map[string]map[string]string
	}
	if err := decode(r, &req); err != nil {
		answer(w, err)
		return
	}
	m, err := p.submittable(req.As, req.Modal, req.Values)
	if err != nil {
		answer(w, err)
		return
	}
	defer p.setBusy(m.TriggerID, false)
	id, err := p.slack.SubmitValues(m, req.Values)
	if err != nil {
		answer(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ackWait)
	defer cancel()
	ack, err := p.slack.AwaitAck(ctx, id)
	if err != nil {
		answer(w, fmt.Errorf("pgkill did not answer the form: %w", err))
		return
	}
	var resp struct {
		Action string            `json:"response_action"`
		Errors map[string]string `json:"errors"`
	}
	if len(ack.Payload) > 0 && json.Unmarshal(ack.Payload, &resp) != nil {
		answer(w, errors.New("pgkill answered the form with an ack this page cannot read"))
		return
	}
	p.views.mu.Lock()
	st := p.views.state(m.TriggerID)
	st.errors, st.done = nil, true
	if resp.Action == "errors" {
		st.errors, st.done = resp.Errors, false
	}
	out := map[string]any{"open": !st.done, "errors": st.errors}
	p.views.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// submittable checks a submission: the person's open modal is this one,
// no other submission of it waits for an ack, and the values name only its
// inputs. It marks the modal busy.
func (p *Page) submittable(as, id string, values map[string]map[string]string) (localslack.Modal, error) {
	if _, err := p.person(as); err != nil {
		return localslack.Modal{}, err
	}
	m, ok := p.open(as)
	if !ok || m.TriggerID != id {
		return m, errors.New("this form is no longer open; press the button again")
	}
	inputs, err := inputIDs(m.View)
	if err != nil {
		return m, err
	}
	for block, actions := range values {
		for action := range actions {
			if !inputs[block+"\x00"+action] {
				return m, fmt.Errorf("the form has no input %q in block %q", action, block)
			}
		}
	}
	p.views.mu.Lock()
	defer p.views.mu.Unlock()
	st := p.views.state(id)
	if st.done { // closed since p.open looked
		return m, errors.New("this form is no longer open; press the button again")
	}
	if st.busy {
		return m, errors.New("this form is being submitted already")
	}
	st.busy = true
	return m, nil
}

func (p *Page) setBusy(id string, busy bool) {
	p.views.mu.Lock()
	defer p.views.mu.Unlock()
	p.views.state(id).busy = busy
}

// inputIDs are a view's input blocks' block and action IDs.
func inputIDs(viewJSON []byte) (map[string]bool, error) {
	var v view
	if err := json.Unmarshal(viewJSON, &v); err != nil {
		return nil, fmt.Errorf("view: %w", err)
	}
	ids := map[string]bool{}
	for _, bl := range v.Blocks {
		if bl.Type == "input" && bl.Element != nil {
			ids[bl.BlockID+"\x00"+bl.Element.ActionID] = true
		}
	}
	return ids, nil
}

// closeView drops the person's open modal (Close, Back or Escape). pgkill's
// modals do not ask for view_closed (notify_on_close), so the bot is told
// nothing, as in Slack.
func (p *Page) closeView(w http.ResponseWriter, r *http.Request) {
	var req struct{ As, Modal string }
	if err := decode(r, &req); err != nil {
		answer(w, err)
		return
	}
	if _, err := p.person(req.As); err != nil {
		answer(w, err)
		return
	}
	if m, ok := p.open(req.As); ok && m.TriggerID == req.Modal {
		p.views.mu.Lock()
		p.views.state(req.Modal).done = true
		p.views.mu.Unlock()
	}
	answer(w, nil) // closing a form already gone is no error: it is closed
}
