package bot

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/bot/request"
	"github.com/pgkill/pgkill/pg"
)

var plantedSecrets = []string{"sk_live_PLANTED", "alice@example.com", "123-45-6789", "4111111111111111"}

// stubDB lists one backend running query.
type stubDB struct {
	fleet.DB
	query string
}

func (s stubDB) List(context.Context, []string, pg.Filter) []pg.Listing {
	return []pg.Listing{{Target: "prod", Backends: []pg.Backend{s.backend()}}}
}
func (s stubDB) Backend(context.Context, string, int32) (pg.Backend, error) { return s.backend(), nil }
func (s stubDB) backend() pg.Backend {
	return pg.Backend{Identity: pg.Identity{Target: "prod", PID: 4242}, State: pg.StateActive, BackendType: "client backend",
		User: "app", Application: "web", Query: s.query, Duration: time.Hour}
}

// FuzzNoSecretInSlackPayloads plants secrets in every kind of literal and
// comment around the fuzz input, cuts the text where the input says (as
// track_activity_query_size does), reads it as the bot does (fleet.Shown
// with PGKILL_REDACT's default) as every message is built, and renders every message that
// shows query text: no part of a planted secret may reach a payload.
func FuzzNoSecretInSlackPayloads(f *testing.F) {
	f.Add("x", uint16(0))
	f.Add("it's", uint16(40))
	f.Add("$$", uint16(95))
	f.Add("*/ --", uint16(200))
	f.Fuzz(func(t *testing.T, in string, cut uint16) {
		// The input fills each literal and comment as that kind of token
		// allows (quotes doubled or escaped, no early end): the secrets stay
		// inside literals and comments, and the cut may fall anywhere.
		comment := strings.NewReplacer("*/", "", "/*", "").Replace(in)
		str := strings.ReplaceAll(in, "'", "''")
		estr := strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(in)
		line := strings.NewReplacer("\n", "", "\r", "").Replace(in)
		dollar := strings.ReplaceAll(in, "$tag$", "")
		q := "SELECT /* " + plantedSecrets[0] + comment + " */ * FROM t WHERE email = '" + plantedSecrets[1] + str +
			"' AND ssn = E'" + plantedSecrets[2] + "\\'" + estr + "' -- " + plantedSecrets[3] + line + "\n AND body = $tag$" +
			plantedSecrets[0] + dollar + "$tag$ AND n = " + plantedSecrets[3]
		if c := int(cut) % (len(q) + 1); c > 0 {
			q = q[:c]
		}
		db := fleet.Shown(stubDB{query: q}, redact.Literals.Show)
		ls := db.List(context.Background(), nil, pg.Filter{})
		b := ls[0].Backends[0]
		now := time.Now()
		req := request.Request{ID: "R1", Action: pg.Cancel, Backend: b, Requester: "U1", State: request.Pending, Requested: now, Expires: now}
		msgs := []any{
			blocks.ListingMessage(blocks.Listing{Targets: []string{"prod"}, Results: ls, Now: now}),
			blocks.RequestMessage(req, nil),
			blocks.AlertMessage(blocks.Alert{Backend: b, Since: now, Now: now}),
			blocks.AlertSummary(blocks.Summary{Backends: []pg.Backend{b, b}, Show: 3, BulkSet: "S1", BulkCount: 2, Now: now}),
			blocks.AuditLine("request", "U1", req, ""),
			blocks.ReasonModal(blocks.ReasonPrompt{Action: pg.Cancel, Backend: b}),
			blocks.ReasonModal(blocks.ReasonPrompt{Action: pg.Cancel, Members: 2, Scope: "app=x"}),
		}
		for _, m := range msgs {
			raw, _ := json.Marshal(m)
			for _, s := range plantedSecrets {
				for i := 0; i+6 <= len(s); i++ {
					if strings.Contains(string(raw), s[i:i+6]) {
						t.Fatalf("%q of a planted secret reached a payload: query %q → %s", s[i:i+6], q, raw)
					}
				}
			}
		}
	})
}
