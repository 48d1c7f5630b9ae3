package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/pg"
)

// -redact shows query text as Slack does, by bot/redact's rules: the forms
// a generic SQL lexer misreads are hidden here too, in text and JSON.
func TestRedactFlag(t *testing.T) {
	queries := map[int32]string{
		1: "SELECT attrs?$$sk_live_cli_glued$$, t.$$sk_live_cli_dot$$ FROM t",
		2: "SET app.token = sk_live_cli_set",
		3: "DO $$BEGIN RAISE NOTICE 'sk_live_cli_do'; END $$",
	}
	var bs []pg.Backend
	for pid, q := range queries {
		bs = append(bs, backend(pid, time.Minute, q))
	}
	f := &fakeDB{names: []string{"prod"}, listings: []pg.Listing{{Target: "prod", Backends: bs}}}
	for _, args := range [][]string{{"list", "-redact", "-wide"}, {"list", "-redact", "-json"}} {
		r := run(t, f, "", args...)
		if r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
		if strings.Contains(r.out, "sk_live") {
			t.Errorf("%v shows a secret:\n%s", args, r.out)
		}
		for _, q := range queries {
			if want := redact.SQL(q); !strings.Contains(r.out, strings.ReplaceAll(want, `"`, `\"`)) && !strings.Contains(r.out, want) {
				t.Errorf("%v lacks %q:\n%s", args, want, r.out)
			}
		}
	}
}

// -redact holds for the listing that follows with the blocking tree too
// (a Degraded listing, then Complete's).
func TestRedactFlagAfterTheTree(t *testing.T) {
	root := backend(10, time.Hour, "UPDATE accounts SET token = 'sk_live_tree' WHERE id = 1")
	root.State, root.LikelyRoot = pg.StateIdleInTransaction, true
	busy := pg.Listing{Target: "prod", Degraded: true, LockWaits: 1, Backends: []pg.Backend{root}, NoTree: "the lock table is busy"}
	full := root
	full.LikelyRoot, full.Blocking, full.BlockingTotal = false, 1, 1
	f := &fakeDB{names: []string{"prod"}, listings: []pg.Listing{busy}, full: map[string]pg.Listing{"prod": {Target: "prod", Backends: []pg.Backend{full}}}}
	for _, args := range [][]string{{"list", "-redact", "-wide"}, {"list", "-redact", "-json"}} {
		r := run(t, f, "", args...)
		if !strings.Contains(r.out, "-- with the blocking tree") && !strings.Contains(r.out, `"blocking": 1`) {
			t.Fatalf("%v: no second listing:\n%s", args, r.out)
		}
		if strings.Contains(r.out, "sk_live") {
			t.Errorf("%v shows a secret:\n%s", args, r.out)
		}
	}
}
