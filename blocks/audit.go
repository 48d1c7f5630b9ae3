package blocks

import (
	"fmt"

	"github.com/pgkill/pgkill/bot/request"
)

// AuditLine is one line of the audit channel: the request, the event, the
// action and backend, and who did it. Every name a database client chose
// (user, database, application) is shown as code, never as mrkdwn, a
// mention or a link; an empty actor is pgkill itself (expiry, recovery).
func AuditLine(event, actor string, r request.Request, result string) Message {
	b := r.Backend
	who := "pgkill"
	if actor != "" {
		who = mention(actor)
	}
	line := fmt.Sprintf("%s *%s* %s pid %d on %s (user %s, db %s, app %s) — by %s",
		inline(r.ID), Escape(event), Escape(string(r.Action)), b.PID, inline(b.Target),
		inline(b.User), inline(b.Database), inline(b.Application), who)
	if result != "" {
		line += ": " + Escape(result)
	}
	if r.Reason != "" && (event == "request" || result != "") {
		line += " · reason " + inline(OneLine(r.Reason, 300))
	}
	text := fmt.Sprintf("pgkill audit: %s %s %s pid %d on %s", r.ID, event, r.Action, b.PID, b.Target)
	if result != "" {
		text += ": " + result
	}
	return Message{Text: Truncate(text, 200), Blocks: Notice(line).Blocks}
}
