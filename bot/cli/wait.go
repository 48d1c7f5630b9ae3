package cli

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// ShowWait returns pg.Options.Waiting for the command line: a line on w
// while a connection attempt takes long, saying what is happening and why.
func ShowWait(w io.Writer) func(pg.Wait) {
	var mu sync.Mutex
	return func(wt pg.Wait) {
		mu.Lock()
		defer mu.Unlock()
		if wt.Accepted {
			fmt.Fprintf(w, "pgkill: %s: the server accepted the connection %s ago but has not started the session; waiting up to %s (-wait): in a lock pile-up PostgreSQL starts new sessions only when its deadlock checks let go of the lock table\n",
				wt.Target, blocks.Typed(wt.For.Round(time.Second)), blocks.Typed(wt.Limit.Round(time.Second)))
			return
		}
		fmt.Fprintf(w, "pgkill: %s: still connecting after %s (waiting up to %s, -wait)\n", wt.Target, blocks.Typed(wt.For.Round(time.Second)), blocks.Typed(wt.Limit.Round(time.Second)))
	}
}

// waiting bounds the reads of one command by -wait: a connection attempt
// may wait that long for the server to start the session, and the command
// that long for its answers.
func waiting(ctx context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(pg.WithConnectWait(ctx, wait), wait)
}
