package cli

import (
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/bot/redact"
)

// redacting returns a copy of c whose sessions carry query text as Slack
// shows it by default (-redact: PGKILL_REDACT=literals). The command line
// shows full text otherwise: its user holds the credentials.
func (c *CLI) redacting() *CLI {
	cp := *c
	cp.DB = fleet.Shown(c.DB, redact.Literals.Show)
	return &cp
}
