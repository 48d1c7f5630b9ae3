// Package fakeslack is bot/localslack for tests: a Slack with the tokens
// tests configure, its fault injection at hand, and helpers that fail the
// test instead of returning errors. Import it from _test.go files only.
package fakeslack

import (
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/localslack"
)

// The tokens every test's bot is configured with; and the workspace.
const (
	AppToken = "xapp-1-A111-fake-app-token"
	BotToken = "xoxb-111-fake-bot-token"
	TeamID   = localslack.TeamID
	AppID    = localslack.AppID
)

// AckDeadline is Slack's: an envelope not acknowledged within it shows the
// user an error.
const AckDeadline = localslack.AckDeadline

// TriggerLifetime is Slack's: views.open with an older trigger_id fails.
const TriggerLifetime = localslack.TriggerLifetime

type (
	Message = localslack.Message
	Modal   = localslack.Modal
	Call    = localslack.Call
	Ack     = localslack.Ack
)

// ErrNoButton: the message has no such button.
var ErrNoButton = localslack.ErrNoButton

// FindButton finds a button in a message's blocks.
func FindButton(m Message, actionID, valueHas string) (blockID, value string, err error) {
	return localslack.FindButton(m, actionID, valueHas)
}

// MethodsNeeding lists the methods that need scope.
func MethodsNeeding(scope string) []string { return localslack.MethodsNeeding(scope) }

// Server is a local Slack with its faults and the test helpers below.
type Server struct {
	*localslack.Server
	*localslack.Faults
}

// New starts a fake Slack answering AppToken and BotToken; it stops when
// the test ends (cancel the bot's context first: the test's cleanups run in
// reverse order).
func New(tb testing.TB) *Server {
	s, err := localslack.Start(localslack.Options{AppToken: AppToken, BotToken: BotToken})
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	tb.Cleanup(s.Close)
	return Wrap(s)
}

// Wrap gives a running local Slack (the demo's) the test helpers.
func Wrap(s *localslack.Server) *Server { return &Server{s, s.Faults()} }

// Eventually waits until cond (called with nothing locked) holds, or fails
// the test after timeout.
func (s *Server) Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		ch := s.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond): // conditions on the database change without us
		case <-deadline:
			tb.Fatalf("fakeslack: timed out after %v waiting for %s", timeout, what)
		}
	}
}

// WaitAck waits for envelope id's acknowledgement.
func (s *Server) WaitAck(tb testing.TB, id string) Ack {
	tb.Helper()
	var a Ack
	s.Eventually(tb, 10*time.Second, "ack of "+id, func() bool {
		var ok bool
		a, ok = s.Ack(id)
		return ok
	})
	return a
}

// SlashCommand sends /command text as user in channel and returns the
// envelope ID.
func (s *Server) SlashCommand(tb testing.TB, command, user, channel, text string) string {
	tb.Helper()
	id, err := s.Command(command, user, channel, text)
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	return id
}

// Click presses the button actionID (whose value contains valueHas) on
// message m, as user; it returns the envelope ID.
func (s *Server) Click(tb testing.TB, user string, m Message, actionID, valueHas string) string {
	tb.Helper()
	blockID, value, err := FindButton(m, actionID, valueHas)
	if err != nil {
		tb.Fatalf("fakeslack: %v: %s %q in message %s", err, actionID, valueHas, m.TS)
	}
	return s.ClickValue(tb, user, m, actionID, blockID, value)
}

// ClickValue presses a button with an arbitrary value (e.g. a stale or
// forged one).
func (s *Server) ClickValue(tb testing.TB, user string, m Message, actionID, blockID, value string) string {
	tb.Helper()
	return s.send(tb, "interactive", s.ClickPayload(user, m, actionID, blockID, value))
}

// Submit submits modal as its user with the given input values (block ID →
// action ID → text) and returns the envelope ID; its ack carries any
// response_action.
func (s *Server) Submit(tb testing.TB, m Modal, values map[string]map[string]string) string {
	tb.Helper()
	id, err := s.SubmitValues(m, values)
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	return id
}

// Disconnect sends Slack's disconnect message on every open connection
// (slack-go reconnects at once).
func (s *Server) Disconnect(tb testing.TB, reason string) {
	tb.Helper()
	if err := s.Faults.Disconnect(reason); err != nil {
		tb.Fatalf("fakeslack: disconnect: %v", err)
	}
}

func (s *Server) send(tb testing.TB, typ string, payload any) string {
	tb.Helper()
	id, err := s.Send(typ, payload)
	if err != nil {
		tb.Fatalf("fakeslack: %v", err)
	}
	return id
}
