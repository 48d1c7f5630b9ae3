package demo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// TestRenderModalGolden draws the reason form as blocks builds it (title,
// submit and close are not in the Block Kit golden files, only its blocks)
// and compares with testdata/modal_NAME.html.
func TestRenderModalGolden(t *testing.T) {
	nasty := pg.Backend{
		Identity: pg.Identity{Target: "prod<&>", PID: 4001}, Database: "db```x",
		User: "we<ird>&`user`", Application: "app 🚀 <!channel> & `rm` \"q\"",
		Query: "SELECT '<&>' AS \"```\", ':fire:' -- </textarea><script>alert(1)</script>", Duration: 5*time.Minute + time.Second,
	}
	for _, tc := range []struct {
		name string
		p    blocks.ReasonPrompt
	}{
		{"terminate_required", blocks.ReasonPrompt{Action: pg.Terminate, Backend: nasty, Required: true, Metadata: `{"u":"U1"}`}},
		{"cancel_optional", blocks.ReasonPrompt{Action: pg.Cancel, Backend: nasty, Metadata: `{"u":"U1"}`}},
		{"bulk_required", blocks.ReasonPrompt{Action: pg.Terminate, Members: 1234, Scope: "prod ≥ 0s app=<report>&`x`", Required: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := json.Marshal(blocks.ReasonModal(tc.p))
			if err != nil {
				t.Fatal(err)
			}
			got, err := RenderModal(v, Names{})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "modal_"+tc.name+".html"), got)
		})
	}
}

func TestRenderModalDefaults(t *testing.T) {
	// No close text: Slack's "Cancel"; no submit: no submit button; a
	// single-line input with a value to escape; an element it cannot draw.
	v := `{"type":"modal","title":{"type":"plain_text","text":"<T>"},"blocks":[` +
		`{"type":"input","block_id":"b\"1","label":{"type":"plain_text","text":"L&"},"optional":true,` +
		`"element":{"type":"plain_text_input","action_id":"a1","initial_value":"\"><script>"}},` +
		`{"type":"input","block_id":"b2","label":{"type":"plain_text","text":"Pick"},"element":{"type":"static_select","action_id":"s"}}]}`
	got, err := RenderModal([]byte(v), Names{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<h3 class="bk-view-title">&lt;T&gt;</h3>`,
		`data-block-id="b&#34;1"`,
		`L&amp; <span class="bk-optional">(optional)</span>`,
		`<input type="text" class="bk-text-input" data-block-id="b&#34;1" data-action-id="a1" value="&#34;&gt;&lt;script&gt;">`,
		`(a static_select element)`,
		`<button type="button" class="bk-button bk-view-close">Cancel</button></div>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	if strings.Contains(got, "bk-view-submit") {
		t.Errorf("a submit button for a view without one:\n%s", got)
	}
	if _, err := RenderModal([]byte("{"), Names{}); err == nil {
		t.Error("a view that is not JSON was drawn")
	}
}

// golden compares got with the file, or rewrites it with -update.
func golden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./bot/demo -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./bot/demo -update, then review the diff)\ngot:\n%s", file, got)
	}
}
