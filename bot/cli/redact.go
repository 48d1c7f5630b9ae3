package cli

import (
	"context"

	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/pg"
)

// redacting returns a copy of c whose sessions carry query text as Slack
// shows it (-redact): literals and comments hidden by bot/redact. The
// command line shows full text by default: its user holds the credentials.
func (c *CLI) redacting() *CLI {
	cp := *c
	cp.DB = redactedFleet{c.DB}
	return &cp
}

type redactedFleet struct{ Fleet }

func (r redactedFleet) List(ctx context.Context, targets []string, f pg.Filter) []pg.Listing {
	ls := r.Fleet.List(ctx, targets, f)
	for i := range ls {
		for j := range ls[i].Backends {
			ls[i].Backends[j].Query = redact.SQL(ls[i].Backends[j].Query)
		}
	}
	return ls
}

func (r redactedFleet) Backend(ctx context.Context, target string, pid int32) (pg.Backend, error) {
	b, err := r.Fleet.Backend(ctx, target, pid)
	b.Query = redact.SQL(b.Query)
	return b, err
}
