package bot_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/blocks"
)

// A listing of twenty backends with long queries (PostgreSQL keeps 1 kB of
// each: track_activity_query_size) is posted whole: Slack, like the fake,
// refuses a message with too much text in total (msg_blocks_too_long).
func TestListingOfLongQueriesFitsOneMessage(t *testing.T) {
	e := start(t)
	for i := range blocks.MaxListed {
		e.victim(t, "size_long", fmt.Sprintf("SELECT pg_sleep(60), %d AS n, '%s' AS pad", i, strings.Repeat("x", 2000)))
	}
	m := e.list(t, requester, "main 0s app=size_long")
	if m.Via != "chat.postMessage" {
		t.Errorf("listing posted through %s", m.Via)
	}
	if n := strings.Count(string(m.Blocks), blocks.ActionTerminate); n != blocks.MaxListed {
		t.Errorf("%d backends listed, want %d", n, blocks.MaxListed)
	}
	for _, c := range e.slack.Calls("chat.postMessage") {
		if n := blocks.TextLength([]byte(c.Params["blocks"])); n > blocks.MaxMessageText {
			t.Errorf("a message of %d characters of text, over %d", n, blocks.MaxMessageText)
		}
	}
}
