package blocks_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

func TestSignalValueRoundTrip(t *testing.T) {
	loc := time.FixedZone("x", 3600)
	in := blocks.Signal{Action: pg.Terminate, Identity: pg.Identity{
		Target: "prod-eu_1", PID: 2147483647,
		BackendStart: time.Date(2026, 11, 25, 10, 0, 0, 123456000, loc),
		QueryStart:   time.Date(2026, 11, 25, 10, 5, 0, 1000, time.UTC),
		ServerStart:  time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}}
	v := blocks.EncodeSignal(in)
	if len(v) > 2000 {
		t.Errorf("value is %d characters", len(v))
	}
	out, err := blocks.DecodeSignal(v)
	if err != nil {
		t.Fatal(err)
	}
	if out.Action != in.Action || out.Target != in.Target || out.PID != in.PID ||
		!out.BackendStart.Equal(in.BackendStart) || !out.QueryStart.Equal(in.QueryStart) || !out.ServerStart.Equal(in.ServerStart) {
		t.Errorf("round trip: %+v != %+v", out, in)
	}
}

func TestDecodeSignalRejects(t *testing.T) {
	good := blocks.EncodeSignal(blocks.Signal{Action: pg.Cancel, Identity: pg.Identity{Target: "t", PID: 1}})
	for _, v := range []string{
		"", "garbage", strings.Replace(good, "v1", "v9", 1), strings.Replace(good, "cancel", "kill", 1),
		strings.Replace(good, "|1|", "|-4|", 1), strings.Replace(good, "|1|", "|x|", 1),
		strings.Replace(good, "|t|", "||", 1), good + "|extra", strings.Replace(good, "0001-01-01T00:00:00Z", "yesterday", 1),
	} {
		if _, err := blocks.DecodeSignal(v); err == nil {
			t.Errorf("DecodeSignal(%q) accepted", v)
		}
	}
}

func FuzzDecodeSignal(f *testing.F) {
	f.Add(blocks.EncodeSignal(blocks.Signal{Action: pg.Cancel, Identity: pg.Identity{Target: "t", PID: 1}}))
	f.Add("v1|terminate|a|2|x|y|z")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := blocks.DecodeSignal(v)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		again, err := blocks.DecodeSignal(blocks.EncodeSignal(s))
		if err != nil || again.PID != s.PID || again.Target != s.Target || !again.QueryStart.Equal(s.QueryStart) {
			t.Errorf("%q: %+v then %+v, %v", v, s, again, err)
		}
	})
}
