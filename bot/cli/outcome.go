package cli

import (
	"bufio"
	"fmt"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// attemptLine says what came of signalling b, claiming only what was
// observed, and its exit code.
func attemptLine(action pg.Action, b pg.Backend, a pg.Attempt) (string, int) {
	head := fmt.Sprintf("pid %d on %s:", b.PID, b.Target)
	out := a.Outcome
	switch {
	case a.NotSent != "":
		return fmt.Sprintf("%s nothing signalled: %s", head, Visible(a.NotSent)), ExitNothingDone
	case a.Err != "":
		return fmt.Sprintf("%s %s; the signal may or may not have been sent: run pgkill list -target %s to see", head, lineText(a.Err), b.Target), ExitError
	case out.Result == pg.Sent:
		return verifyLine(action, b, a.Verified, a.VerifyErr)
	}
	switch out.Result {
	case pg.Gone:
		return head + " nothing signalled: that statement is no longer running (it finished, or the session moved on or ended)", ExitNothingDone
	case pg.ServerChanged:
		return head + " nothing signalled: the server restarted or failed over since the session was read", ExitNothingDone
	case pg.Denied:
		return fmt.Sprintf("%s nothing signalled: PostgreSQL refused: %s; fix: %s", head, Visible(out.Message), Visible(out.Fix)), ExitNothingDone
	case pg.Protected:
		return fmt.Sprintf("%s nothing signalled: the session is protected now, though it was not when read: it matches %s", head, Visible(out.Message)), ExitNothingDone
	}
	return fmt.Sprintf("%s unexpected result %q", head, out.Result), ExitError
}

// verifyLine says what became of a signalled backend, and its exit code;
// verifyErr is why watching it failed.
func verifyLine(action pg.Action, b pg.Backend, v pg.Verification, verifyErr string) (string, int) {
	head := fmt.Sprintf("pid %d on %s:", b.PID, b.Target)
	after := seconds(v.After)
	switch {
	case verifyErr != "":
		return fmt.Sprintf("%s signal sent, but whether it ended is unknown: %s", head, lineText(verifyErr)), ExitError
	case v.MaybeNext:
		return fmt.Sprintf("%s signal sent, but the approved statement had already ended by itself before it; the signal may have reached the statement after it (seen %s after the signal)", head, after), ExitError
	case v.Ended && v.State == pg.StateIdleInTxAborted && v.Locks != 0:
		return fmt.Sprintf("%s ended: query ended %s after the signal; its transaction is still open (aborted) and %s until the client rolls back; to end it: %s",
			head, after, locksHeld(v.Locks), nextCommand(pg.Terminate, b)), ExitOK
	case v.Ended && v.State == pg.StateIdleInTxAborted:
		return fmt.Sprintf("%s ended: query ended %s after the signal; its transaction is still open (aborted) but holds no locks: it ends when the client rolls back", head, after), ExitOK
	case v.Ended:
		return fmt.Sprintf("%s ended: %s %s after the signal", head, v.How, after), ExitOK
	}
	next := pg.WhyStillRunning(action, v)
	if action == pg.Cancel {
		next += " Next: " + nextCommand(pg.Terminate, b)
	}
	return fmt.Sprintf("%s STILL RUNNING %s after the signal, when pgkill stopped watching (state %s, waiting on %s%s). %s",
		head, after, Visible(string(v.State)), waitEvent(v.WaitEventType, v.WaitEvent), lockNote(v.Locks), next), ExitStillRunning
}

// locksHeld counts the locks pg_locks showed, or admits it was not read.
func locksHeld(n int) string {
	switch {
	case n < 0:
		return "may hold locks (they could not be counted)"
	case n == 0:
		return "holds no locks"
	}
	return fmt.Sprintf("holds %s", plural(n, "lock"))
}

func lockNote(n int) string {
	if n < 0 {
		return ""
	}
	return ", " + locksHeld(n)
}

// seconds is a wait as it was measured: 9.4s, not a rounded-down 9s that
// would contradict "up to 10s".
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// confirm asks a y/N question; anything but yes (EOF, no terminal) is no.
func (c *CLI) confirm(question string) bool {
	fmt.Fprint(c.Out, question)
	line, _ := bufio.NewReader(c.In).ReadString('\n')
	fmt.Fprintln(c.Out)
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
