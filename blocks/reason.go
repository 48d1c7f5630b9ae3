package blocks

import (
	"fmt"

	"github.com/slack-go/slack"

	"github.com/pgkill/pgkill/pg"
)

// The reason modal: its callback_id, and the block and action IDs of its
// one input, which a view_submission's state carries back.
const (
	ReasonCallback = "pgkill_reason"
	ReasonBlock    = "reason"
	ReasonAction   = "reason_text"
	// MaxReason is the input's limit; the bot checks it again.
	MaxReason = 500
)

// ReasonPrompt is what the reason modal shows and carries: one backend, or,
// for Cancel all / Terminate all, a set of Members sessions.
type ReasonPrompt struct {
	Action   pg.Action
	Backend  pg.Backend
	Members  int    // > 0: a bulk request for this many sessions
	Scope    string // a bulk request's filter, as its card shows it
	Required bool
	Metadata string // private_metadata: what the submission needs to make the request
}

// ReasonModal asks why a cancel or terminate is requested, before the
// approval card is posted. A required reason is checked by the bot when the
// modal is submitted (Slack shows its answer under the input).
func ReasonModal(p ReasonPrompt) slack.ModalViewRequest {
	b := p.Backend
	verb := capitalize(string(p.Action))
	hint := "Optional: it goes on the approval card and in the audit trail."
	if p.Required {
		hint = "Required: a few words or an incident link. It goes on the approval card and in the audit trail."
	}
	input := slack.NewPlainTextInputBlockElement(plain("e.g. INC-4211: report blocks checkout"), ReasonAction).
		WithMultiline(true).WithMaxLength(MaxReason)
	in := slack.NewInputBlock(ReasonBlock, plain("Why?"), plain(hint), input).WithOptional(!p.Required)
	title := fmt.Sprintf("%s pid %d", verb, b.PID)
	what := fmt.Sprintf("*%s* pid %d on *%s* · user %s · app %s · %s\n", verb, b.PID, Escape(b.Target), inline(b.User), inline(b.Application), stateText(b))
	if bl := blocksText(b); bl != "" {
		what += ":link: " + bl + "\n"
	}
	if p.Action == pg.Terminate {
		what += "_Terminate closes the session and rolls back its transaction._\n"
	}
	what += codeBlock(b.Query, 600)
	if p.Members > 0 {
		title = fmt.Sprintf("%s all %d", verb, p.Members)
		what = fmt.Sprintf("*%s all %d* sessions matching %s\nEach is signalled only if it still runs the statement listed.", verb, p.Members, inline(Truncate(p.Scope, 600)))
	}
	return slack.ModalViewRequest{
		Type:       slack.VTModal,
		CallbackID: ReasonCallback,
		Title:      plain(Truncate(title, 24)),
		Submit:     plain("Ask for approval"),
		Close:      plain("Back"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			section("what", what),
			in,
		}},
		PrivateMetadata: p.Metadata,
	}
}
