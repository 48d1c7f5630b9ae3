package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// FuzzArgs runs every command's flag and argument parsing on what a person
// might type: whatever the line, the command answers (an exit code) and the
// process does not go down.
func FuzzArgs(f *testing.F) {
	for _, s := range []string{
		"list", "list -min 30s -state idle -user app* -db 'orders' -limit 5", "list -json -wide -blocking",
		"list -watch 1s", "list -wait 2m -target prod", "list -state sleeping", "list -min 5", "list -min -1s",
		"cancel 4242", "cancel -y -target prod 4242 4243", "terminate -y prod:4242", "cancel -user app -y",
		"terminate -app 'nightly*' -min 1h", "cancel -redact 1", "doctor", "doctor prod", "doctor -json",
		"autopilot test -wait 1s", "autopilot", "list --version", "cancel 99999999999999999999", "cancel -- -1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		if len(args) == 0 {
			return
		}
		db := &fakeDB{names: []string{"prod"}, backends: map[int32]pg.Backend{4242: backend(4242, time.Hour, "SELECT 1")}}
		var out bytes.Buffer
		c := &CLI{DB: db, In: strings.NewReader(""), Out: &out, Err: &out,
			Opts: Options{MinDuration: time.Minute, VerifyTimeout: 10 * time.Millisecond}}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond) // -watch lists until it ends
		defer cancel()
		switch args[0] {
		case "list":
			_ = c.List(ctx, args[1:])
		case "cancel":
			_ = c.Signal(ctx, pg.Cancel, args[1:])
		case "terminate":
			_ = c.Signal(ctx, pg.Terminate, args[1:])
		case "doctor":
			_ = c.Doctor(ctx, args[1:])
		case "autopilot":
			_ = c.Autopilot(ctx, args[1:])
		default:
			_ = c.List(ctx, args)
		}
	})
}
