package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/approval"
	"github.com/pgkill/pgkill/bot/config"
	"github.com/pgkill/pgkill/pg"
)

// tellingAPI is fakeAPI that keeps the text of every response_url answer.
type tellingAPI struct {
	fakeAPI
	mu    sync.Mutex
	tells []string
}

func (f *tellingAPI) SendMessageContext(_ context.Context, _ string, opts ...slack.MsgOption) (string, string, string, error) {
	_, values, _ := slack.UnsafeApplyMsgOptions("", "", "", opts...)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tells = append(f.tells, values.Get("text"))
	return "", "", "", nil
}

func (f *tellingAPI) told() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tells...)
}

// panickyPG fails (panics) in List, as a bug in any handler would.
type panickyPG struct{ *fakePG }

func (panickyPG) List(context.Context, []string, pg.Filter) []pg.Listing {
	var ids []int
	_ = ids[len(ids)+1] // a runtime error, as a real bug would give
	return nil
}

// syncWriter collects log output from several goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func slashEvent(text string) socketmode.Event {
	return socketmode.Event{Type: socketmode.EventTypeSlashCommand, Request: &socketmode.Request{EnvelopeID: "e1"},
		Data: slack.SlashCommand{Command: "/pgkill", Text: text, UserID: "UREQ", ChannelID: "C", ResponseURL: "https://hooks.example/1"}}
}

// A failure (a Go panic) in the handling of one envelope does not stop the
// process: it is logged with the envelope's kind — never its payload — and
// counted on /metrics, the user is told nothing more was done, and the next
// envelope is handled as usual.
func TestHandlerPanicIsRecovered(t *testing.T) {
	api := &tellingAPI{}
	db := panickyPG{newFakePG()}
	logs := &syncWriter{}
	work, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := config.Config{Approvers: config.IDList{"UAPP"}, ApprovalTTL: time.Minute, VerifyTimeout: time.Second, ConnectTimeout: time.Second,
		Command: "/pgkill", MinDuration: time.Minute}
	b := New(work, cfg, db, api, nil, slog.New(slog.NewJSONHandler(logs, nil)))
	go b.out.Run(work)
	noAck := func(*socketmode.Request, ...any) {}
	flush := func() {
		b.wait(10 * time.Second)
		fctx, cancel := context.WithTimeout(work, 10*time.Second)
		defer cancel()
		_ = b.out.Flush(fctx)
	}

	b.dispatch(slashEvent("0s app=PAYLOAD_MARKER"), noAck)
	flush()
	told := strings.Join(api.told(), "\n")
	if !strings.Contains(told, "nothing more was done") {
		t.Errorf("the user was not told: %q", told)
	}
	var rec map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) == nil && strings.Contains(r["msg"].(string), "handler failed") {
			rec = r
		}
	}
	if rec == nil || rec["envelope"] != "slash_commands" || !strings.Contains(rec["panic"].(string), "index out of range") {
		t.Errorf("the failure's log record = %v", rec)
	}
	if strings.Contains(logs.String(), "PAYLOAD_MARKER") {
		t.Error("the payload reached the log")
	}
	rr := httptest.NewRecorder()
	b.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rr.Body.String(), `pgkill_panics_recovered_total{envelope="slash_commands"} 1`) {
		t.Errorf("/metrics does not count it:\n%s", grepLines(rr.Body.String(), "pgkill_panics"))
	}
	// The next envelope is handled.
	b.dispatch(slashEvent("help"), noAck)
	flush()
	if got := api.told(); len(got) != 2 || !strings.Contains(got[1], "help") {
		t.Errorf("after the failure, help answered %q", got)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// FuzzInbound sends every inbound form a person can produce — slash
// command text, a button's action ID and value, a view submission's
// metadata and reason — through the dispatcher and every handler it starts,
// over fakes: nothing may panic (a recovered panic counts as a failure here).
func FuzzInbound(f *testing.F) {
	sig := blocks.EncodeSignal(blocks.Signal{Action: pg.Cancel, Identity: pg.Identity{Target: "t", PID: 7}})
	bulk := blocks.EncodeBulk(blocks.Bulk{Action: pg.Terminate, SetID: "S1"})
	meta, _ := json.Marshal(approval.Click{User: "UREQ", Channel: "C", Value: sig})
	for _, seed := range []struct {
		kind                     uint8
		text, action, value, mta string
	}{
		{0, "cancel ȺȺ reason=x", "", "", ""},
		{0, "terminate t app=x reason=\"INC-1 runaway report\"", "", "", ""},
		{0, "t 30s db=x user=y app=z state=all limit=3", "", "", ""},
		{0, "doctor t", "", "", ""},
		{1, "", blocks.ActionCancel, sig, ""},
		{1, "", blocks.ActionApprove, "R1", ""},
		{1, "", blocks.ActionBulkTerminate, bulk, ""},
		{1, "", blocks.ActionBulkNext, "R1", ""},
		{1, "", blocks.ActionRefresh, "t 0s", ""},
		{2, "a reason of several words", "", "", string(meta)},
		{2, "", "", "", "{"},
	} {
		f.Add(seed.kind, seed.text, seed.action, seed.value, seed.mta)
	}
	cfg := config.Config{Approvers: config.IDList{"UAPP"}, ApprovalTTL: time.Minute, VerifyTimeout: time.Second, ConnectTimeout: time.Second,
		Command: "/pgkill", MinDuration: time.Minute, Reason: "terminate"}
	b := New(context.Background(), cfg, newFakePG(), &fakeAPI{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	noAck := func(*socketmode.Request, ...any) {}
	f.Fuzz(func(t *testing.T, kind uint8, text, action, value, mta string) {
		var evt socketmode.Event
		switch kind % 3 {
		case 0:
			evt = slashEvent(text)
		case 1:
			var cb slack.InteractionCallback
			cb.Type = slack.InteractionTypeBlockActions
			cb.User.ID, cb.Channel.ID, cb.ResponseURL, cb.TriggerID = "UAPP", "C", "https://hooks.example/2", "trig"
			cb.Container.MessageTs = "1.000001"
			cb.ActionCallback.BlockActions = []*slack.BlockAction{{ActionID: action, Value: value}}
			evt = socketmode.Event{Type: socketmode.EventTypeInteractive, Data: cb, Request: &socketmode.Request{EnvelopeID: "e2"}}
		default:
			var cb slack.InteractionCallback
			cb.Type = slack.InteractionTypeViewSubmission
			cb.User.ID = "UREQ"
			cb.View.CallbackID, cb.View.PrivateMetadata = blocks.ReasonCallback, mta
			cb.View.State = &slack.ViewState{Values: map[string]map[string]slack.BlockAction{
				blocks.ReasonBlock: {blocks.ReasonAction: {Value: text}}}}
			evt = socketmode.Event{Type: socketmode.EventTypeInteractive, Data: cb, Request: &socketmode.Request{EnvelopeID: "e3"}}
		}
		b.dispatch(evt, noAck)
		b.wait(30 * time.Second)
		rr := httptest.NewRecorder()
		b.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rr.Body)
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "pgkill_panics_recovered_total{") && !strings.HasSuffix(l, " 0") {
				t.Fatalf("a handler panicked: %s", l)
			}
		}
	})
}

// deadlinePG answers every backend read "not found", noting whether the
// handler's context had a deadline.
type deadlinePG struct {
	*fakePG
	mu   sync.Mutex
	seen []bool
}

func (d *deadlinePG) Backend(ctx context.Context, _ string, _ int32) (pg.Backend, error) {
	_, ok := ctx.Deadline()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = append(d.seen, ok)
	return pg.Backend{}, pg.ErrNotFound
}

// Every click and form handler runs under a deadline, so that a database
// or state store that stops answering gets its user an answer, not
// silence (the store's own calls are bounded too: bot/request).
func TestHandlersRunUnderADeadline(t *testing.T) {
	db := &deadlinePG{fakePG: newFakePG()}
	cfg := config.Config{Approvers: config.IDList{"UAPP"}, ApprovalTTL: time.Minute, VerifyTimeout: time.Second, ConnectTimeout: time.Second,
		Command: "/pgkill", MinDuration: time.Minute}
	b := New(context.Background(), cfg, db, &fakeAPI{}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sig := blocks.EncodeSignal(blocks.Signal{Action: pg.Cancel, Identity: pg.Identity{Target: "t", PID: 7}})
	var click slack.InteractionCallback
	click.Type = slack.InteractionTypeBlockActions
	click.User.ID, click.Channel.ID, click.ResponseURL = "UREQ", "C", "https://hooks.example/3"
	click.ActionCallback.BlockActions = []*slack.BlockAction{{ActionID: blocks.ActionCancel, Value: sig}}
	meta, _ := json.Marshal(approval.Click{User: "UREQ", Channel: "C", Value: sig})
	var form slack.InteractionCallback
	form.Type = slack.InteractionTypeViewSubmission
	form.User.ID = "UREQ"
	form.View.CallbackID, form.View.PrivateMetadata = blocks.ReasonCallback, string(meta)
	form.View.State = &slack.ViewState{Values: map[string]map[string]slack.BlockAction{blocks.ReasonBlock: {blocks.ReasonAction: {Value: "INC-1 the nightly report runs away"}}}}
	noAck := func(*socketmode.Request, ...any) {}
	for _, cb := range []slack.InteractionCallback{click, form} {
		b.dispatch(socketmode.Event{Type: socketmode.EventTypeInteractive, Data: cb, Request: &socketmode.Request{EnvelopeID: "e4"}}, noAck)
	}
	b.wait(10 * time.Second)
	db.mu.Lock()
	defer db.mu.Unlock()
	if len(db.seen) != 2 || !db.seen[0] || !db.seen[1] {
		t.Errorf("the click's and the form's reads ran with deadlines %v, want [true true]", db.seen)
	}
}
