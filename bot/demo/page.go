package demo

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pgkill/pgkill/bot/localslack"
	"github.com/pgkill/pgkill/bot/loopback"
)

//go:embed static
var static embed.FS

// Person is someone the page lets you be.
type Person struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"` // what they may do, shown beside the name
}

// Channel is a channel the page shows.
type Channel struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Hint string `json:"hint"` // shown while the channel is empty
}

// Page shows the local Slack's channels as Slack would, to whoever the
// visitor says they are, and sends their commands and clicks to the bot
// through the local Slack as that person; a modal the bot opens for them is drawn
// over the channel and submitted as Slack would. It trusts the visitor: it
// listens on loopback only, for one person trying pgkill, and refuses other
// web sites.
type Page struct {
	slack    *localslack.Server
	people   []Person
	channels []Channel
	command  string
	ready    time.Time
	names    Names
	views    views
}

// NewPage returns the page for these people and channels; command is the
// slash command (/pgkill). Until ready, when the incident's queries are
// old enough for the command to list them, the page says the incident is
// starting and its command box waits.
func NewPage(slack *localslack.Server, command string, people []Person, channels []Channel, ready time.Time) *Page {
	names := Names{}
	for _, p := range people {
		names[p.ID] = p.Name
	}
	for _, c := range channels {
		names[c.ID] = c.Name
	}
	return &Page{slack: slack, people: people, channels: channels, command: command, ready: ready, names: names}
}

// Handler serves the page, its state (/state), its live updates (/events,
// Server-Sent Events) and its actions (/command, /click, and /submit and
// /close for modals).
func (p *Page) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.FileServerFS(static))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "static/index.html")
	})
	mux.HandleFunc("GET /state", p.state)
	mux.HandleFunc("GET /events", p.events)
	mux.HandleFunc("POST /command", p.commandHandler)
	mux.HandleFunc("POST /click", p.click)
	mux.HandleFunc("POST /submit", p.submit)
	mux.HandleFunc("POST /close", p.closeView)
	return guard(mux)
}

// guard keeps other web sites out (bot/loopback) and forbids the page any
// script or style but its own.
func guard(next http.Handler) http.Handler {
	return loopback.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Content-Security-Policy", "default-src 'self'; img-src 'self' https: data:; style-src 'self'; base-uri 'none'; form-action 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	}))
}

// shown is one message as the page draws it.
type shown struct {
	Channel   string `json:"channel"`
	TS        string `json:"ts"` // also its time, in Unix seconds, as at Slack
	ThreadTS  string `json:"thread_ts,omitempty"`
	Ephemeral bool   `json:"ephemeral"`
	Edited    bool   `json:"edited"`
	HTML      string `json:"html"`
}

// state answers what the person ?as= sees: every channel message, and the
// ephemeral messages shown to them, and the modal open for them; and how
// long until the incident is in place (starting_ms, 0 once it is).
func (p *Page) state(w http.ResponseWriter, r *http.Request) {
	as := r.URL.Query().Get("as")
	out := struct {
		People     []Person    `json:"people"`
		Channels   []Channel   `json:"channels"`
		Command    string      `json:"command"`
		StartingMS int64       `json:"starting_ms"`
		Messages   []shown     `json:"messages"`
		Modal      *shownModal `json:"modal"`
	}{People: p.people, Channels: p.channels, Command: p.command, Messages: []shown{},
		StartingMS: max(time.Until(p.ready).Milliseconds(), 0)}
	for _, m := range p.slack.Messages(func(m localslack.Message) bool { return !m.Ephemeral || m.User == as }) {
		html, err := Render(m.Blocks, p.names)
		if err != nil || html == "" {
			html = `<div class="bk-section"><div class="bk-text">` + p.names.mrkdwn(m.Text) + `</div></div>`
		}
		out.Messages = append(out.Messages, shown{Channel: m.Channel, TS: m.TS, ThreadTS: m.ThreadTS,
			Ephemeral: m.Ephemeral, Edited: m.Updates > 0, HTML: html})
	}
	if _, err := p.person(as); err == nil {
		out.Modal = p.shownModal(as)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// events tells the page, as Server-Sent Events, each time the local Slack
// changes; the page then reads /state.
func (p *Page) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		changed := p.slack.Changed()
		fmt.Fprint(w, "data: change\n\n")
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-changed:
			// Many changes come together (a post, its ack, an update):
			// let them settle for a moment rather than redraw for each.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		case <-keepalive.C:
		}
	}
}

func (p *Page) person(id string) (Person, error) {
	for _, who := range p.people {
		if who.ID == id {
			return who, nil
		}
	}
	return Person{}, fmt.Errorf("no person %q on this page", id)
}

func (p *Page) channel(id string) error {
	for _, c := range p.channels {
		if c.ID == id {
			return nil
		}
	}
	return fmt.Errorf("no channel %q on this page", id)
}

// commandHandler sends "/pgkill …" typed into the page, as the person.
func (p *Page) commandHandler(w http.ResponseWriter, r *http.Request) {
	var req struct{ As, Channel, Text string }
	if err := decode(r, &req); err != nil {
		answer(w, err)
		return
	}
	cmd, text, _ := strings.Cut(strings.TrimSpace(req.Text), " ")
	if cmd != p.command {
		answer(w, fmt.Errorf("this page sends only %s commands, not %q", p.command, cmd))
		return
	}
	if _, err := p.person(req.As); err != nil {
		answer(w, err)
		return
	}
	if err := p.channel(req.Channel); err != nil {
		answer(w, err)
		return
	}
	_, err := p.slack.Command(cmd, req.As, req.Channel, strings.TrimSpace(text))
	answer(w, err)
}

// click presses a button of a message the person can see.
func (p *Page) click(w http.ResponseWriter, r *http.Request) {
	var req struct{ As, Channel, TS, ActionID, BlockID, Value string }
	if err := decode(r, &req); err != nil {
		answer(w, err)
		return
	}
	if _, err := p.person(req.As); err != nil {
		answer(w, err)
		return
	}
	m, ok := p.slack.Message(req.Channel, req.TS)
	if !ok || (m.Ephemeral && m.User != req.As) {
		answer(w, errors.New("no such message"))
		return
	}
	_, err := p.slack.PressValue(req.As, m, req.ActionID, req.BlockID, req.Value)
	answer(w, err)
}

func decode(r *http.Request, v any) error {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		return errors.New("send JSON")
	}
	return json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10)).Decode(v)
}

func answer(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
