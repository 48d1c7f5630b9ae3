package outbox_test

import (
	"context"
	"testing"

	"github.com/pgkill/pgkill/bot/outbox"
)

// An edit names the message it edits (Item.TS): a key this outbox posted
// once may since have another message as its own — a request's card posted
// here but not recorded, then posted again and recorded by another replica.
// The edit goes to the message the caller names, and Sent says so; the
// first message, which people were told is stale, is not the one edited.
func TestEditGoesToTheMessageNamed(t *testing.T) {
	s := newMemSlack()
	o := start(t, s)
	o.Put(outbox.Item{Key: "card|R1", Channel: "C", Msg: msg("pending, posted here")})
	flush(t, o)
	other, err := s.Post(context.Background(), "C", "", msg("pending, posted again by another replica"))
	if err != nil {
		t.Fatal(err)
	}
	f, res := callback()
	o.Put(outbox.Item{Key: "card|R1", Channel: "C", TS: other, Msg: msg("done"), Sent: f})
	flush(t, o)
	got := <-res
	msgs, _ := s.snapshot()
	if last := msgs[other][len(msgs[other])-1]; last != "done" || got.ts != other {
		t.Errorf("an edit of %s: that message shows %q, Sent reported ts %q (%v); every message: %v", other, last, got.ts, got.err, msgs)
	}
}
