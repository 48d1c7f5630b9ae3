package demo

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the HTML golden files under testdata")

// TestRenderGolden draws every message blocks' golden tests hold (their
// files are the input) and compares with testdata/NAME.html.
func TestRenderGolden(t *testing.T) {
	inputs, err := filepath.Glob("../../blocks/testdata/*.json")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no Block Kit golden files found: %v", err)
	}
	names := Names{"U0REQ": "riley (requester)"}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Render(messageBlocks(t, data), names)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".html")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./bot/demo -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the golden file (go test ./bot/demo -update, then review the diff)\ngot:\n%s", name, got)
			}
		})
	}
}

// messageBlocks takes the blocks of a golden file: a message {"text",
// "blocks"} or a bare array.
func messageBlocks(t *testing.T, data []byte) []byte {
	t.Helper()
	var msg struct {
		Blocks json.RawMessage `json:"blocks"`
	}
	if len(data) > 0 && data[0] == '[' {
		return data
	}
	if err := json.Unmarshal(data, &msg); err != nil || len(msg.Blocks) == 0 {
		t.Fatalf("not a message with blocks: %v", err)
	}
	return msg.Blocks
}

func TestMrkdwn(t *testing.T) {
	names := Names{"U1": "ana", "S1": "dba", "C1": "incident"}
	for _, tc := range []struct{ name, in, want string }{
		{"bold", "*pid 4001* on *prod*", "<b>pid 4001</b> on <b>prod</b>"},
		{"italic_strike", "_why_ and ~not~", "<i>why</i> and <s>not</s>"},
		{"underscores_in_words", "pg_sleep and my_table_name", "pg_sleep and my_table_name"},
		{"unclosed", "5 * 3 and *open", "5 * 3 and *open"},
		{"code", "user `etl` · `*not bold*`", "user <code>etl</code> · <code>*not bold*</code>"},
		{"code_block", "run\n```SELECT 1 &lt; 2 &amp;&amp; *x*```", `run<br><pre class="bk-pre">SELECT 1 &lt; 2 &amp;&amp; *x*</pre>`},
		{"escapes_once", "a &amp;lt; b &gt; c", "a &amp;lt; b &gt; c"},
		{"mention", "*<@U1>* asks <@U9>", `<b><span class="bk-mention">@ana</span></b> asks <span class="bk-mention">@U9</span>`},
		{"subteam", "<!subteam^S1> <!subteam^S2|@ops>", `<span class="bk-mention">@dba</span> <span class="bk-mention">@ops</span>`},
		{"channel", "<#C1> <#C2|general>", `<span class="bk-mention">#incident</span> <span class="bk-mention">#general</span>`},
		{"here", "<!here>", `<span class="bk-mention">@here</span>`},
		{"date", "<!date^1795576440^{date_short_pretty}|2026-11-25 03:14:00 UTC>", `<time class="bk-date" data-ts="1795576440">2026-11-25 03:14:00 UTC</time>`},
		{"link", "<https://example.com/a?b=1&amp;c=2|the docs>", `<a href="https://example.com/a?b=1&amp;c=2" rel="noopener noreferrer" target="_blank">the docs</a>`},
		{"bare_link", "<https://example.com>", `<a href="https://example.com" rel="noopener noreferrer" target="_blank">https://example.com</a>`},
		{"javascript_link", "<javascript:alert(1)|click>", "click"},
		{"emoji", ":stopwatch: 5m :unknown_one:", "⏱️ 5m :unknown_one:"},
		{"newline", "a\nb", "a<br>b"},
		// Raw markup (Slack would have escaped it, but a bug upstream must
		// not become script in the page).
		{"raw_tag", `<img src=x onerror=alert(1)> "q" 'a'`, "img src=x onerror=alert(1) &#34;q&#34; &#39;a&#39;"},
		{"raw_script", "</pre><script>alert(1)</script>", "/prescriptalert(1)/script"},
		{"escaped_script", "&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"},
		{"nul", "a\x00b", "ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := names.mrkdwn(tc.in); got != tc.want {
				t.Errorf("mrkdwn(%q)\n got %s\nwant %s", tc.in, got, tc.want)
			}
		})
	}
}

// ourTags are the only tags mrkdwn emits; attribute values are escaped.
var ourTags = regexp.MustCompile(`<(/?(b|i|s|code|pre|span|time|a)|br)( [a-z-]+="[^"<>]*")*>`)

// FuzzMrkdwn: whatever the text, the output holds no markup but the
// renderer's own tags (go test -fuzz FuzzMrkdwn ./bot/demo).
func FuzzMrkdwn(f *testing.F) {
	for _, s := range []string{"*b* _i_ ~s~ `c` ```pre```", "<@U1|x\"><script>", "<!date^1\"onload=x^f|y>", "<javascript:x|y>",
		"<https://e.com/\"onmouseover=\"x|t>", "&lt;b&gt; &amp;lt;", "<#C1|<b>>", "*_~`<>`~_*", "```<``` <a href=x>"} {
		f.Add(s)
	}
	names := Names{"U1": `<img src=x onerror=alert(1)>`}
	f.Fuzz(func(t *testing.T, s string) {
		out := names.mrkdwn(s)
		if rest := ourTags.ReplaceAllString(out, ""); strings.ContainsAny(rest, "<>") {
			t.Errorf("mrkdwn(%q) = %q: markup not the renderer's", s, out)
		}
	})
}
