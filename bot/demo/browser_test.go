package demo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgkill/pgkill/bot/demo"
)

// chromium finds the browser CI installs (.ci/run); its absence fails the
// test: a browser test that skips proves nothing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium on PATH: install it (apt-get install chromium; .ci/run does) — this test needs a real browser")
	return ""
}

// lockedBuffer collects the bot's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestBrowserCancelThroughApproval plays the approval flow in headless
// Chromium on the demo page: the command box waits while the incident
// starts; the answers pgkill gives in its ack (/pgkill help, an unknown
// target) show to the requester; /pgkill as the requester, Terminate (its form
// requires a reason: sent empty, Slack's own check answers; Back drops it),
// Cancel, its reason
// form (optional in the demo: "." is refused under the input and the form
// stays; a sentence makes the request, shown on the card), then Approve (and
// its confirm dialog) as the approver; the card must show the outcome and
// the report's statement must really end with 57014 in PostgreSQL. The
// approver does not see the requester's private answers.
func TestBrowserCancelThroughApproval(t *testing.T) {
	chrome := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logs := &lockedBuffer{}
	began := time.Now()
	d, err := demo.Start(ctx, demo.Options{Out: io.Discard, Log: logs, LogLevel: "info"})
	if err != nil {
		t.Fatalf("start the demo: %v", err)
	}
	t.Logf("demo ready in %v at %s", time.Since(began).Round(time.Millisecond), d.URL)
	defer func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stop the demo: %v", err)
		}
		if t.Failed() {
			t.Logf("bot log:\n%s", logs.String())
		}
		for _, v := range d.Slack.Violations() {
			t.Errorf("fake Slack saw: %s", v)
		}
	}()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil { // starts it, bound to browser and not to a step's deadline
		t.Fatalf("start Chromium: %v", err)
	}

	shots := t.ArtifactDir()
	shot := func(name string) {
		png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			return
		}
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Error(err)
			return
		}
		t.Logf("screenshot: %s", p)
	}
	// Each step has a deadline of its own, so that a step that never
	// happens leaves time for the screenshot of what the page shows.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			shot("failed")
			t.Fatalf("%s: %v", what, err)
		}
	}
	const (
		asRequester  = chromedp.CSS(`button[data-as="` + demo.Requester + `"][aria-pressed="true"]`)
		asApprover   = chromedp.CSS(`button[data-as="` + demo.Approver + `"][aria-pressed="true"]`)
		cancelBtn    = chromedp.Search(`//div[contains(@class,"msg")][.//h3[contains(.,"Long-running")]]//button[@data-action-id="pgkill_cancel"]`)
		terminateBtn = chromedp.Search(`//div[contains(@class,"msg")][.//h3[contains(.,"Long-running")]]//button[@data-action-id="pgkill_terminate"]`)
		requiredBox  = chromedp.Search(`//div[@id="view"][.//h3[contains(.,"Terminate pid")]]//textarea[@required]`)
		completeIt   = chromedp.Search(`//div[@id="view"]//div[contains(@class,"bk-input-error")][not(@hidden)][.="Please complete this required field."]`)
		approveBtn   = chromedp.Search(`//div[contains(@class,"thread")]//button[@data-action-id="pgkill_approve"]`)
		outcome      = chromedp.Search(`//div[contains(@class,"thread")]//div[contains(@class,"msg")][contains(.,"The query ended")]`)
		reasonBox    = chromedp.CSS(`#view textarea.bk-text-input[data-block-id="reason"]`)
		submitBtn    = chromedp.CSS(`#view .bk-view-submit`)
		refused      = chromedp.CSS(`#view .bk-input[data-block-id="reason"] .bk-input-error:not([hidden])`)
		why          = "INC-4211: the nightly report blocks checkout"
		onCard       = chromedp.Search(`//div[contains(@class,"thread")]//div[contains(@class,"msg")][.//button[@data-action-id="pgkill_approve"]]//code[.="` + why + `"]`)
		helpAnswer   = chromedp.Search(`//div[contains(@class,"msg")][contains(@class,"ephemeral")][.//span[.="Only visible to you"]][contains(.,"lists long-running PostgreSQL queries")]`)
		unknownTgt   = chromedp.Search(`//div[contains(@class,"msg")][contains(@class,"ephemeral")][contains(.,'unknown target or argument "nosuchdb"')]`)
		ephemerals   = `document.querySelectorAll('#messages .msg.ephemeral').length`
	)

	began = time.Now()
	step("open the page", chromedp.Navigate(d.URL), chromedp.WaitVisible(asRequester))
	t.Logf("page drawn in %v", time.Since(began).Round(time.Millisecond))
	step("the empty channel's hint", chromedp.WaitVisible(chromedp.CSS(`#messages .hint`)))
	if time.Now().Before(d.Incident.InPlace.Add(demo.Config(d.Slack).MinDuration - time.Second)) {
		step("the incident is starting: the box waits", chromedp.WaitVisible(chromedp.CSS(`#starting`)),
			chromedp.WaitVisible(chromedp.CSS(`#command[disabled]`)))
		shot("starting")
	}
	step("the incident is in place: the box takes commands", chromedp.WaitVisible(chromedp.CSS(`#command:not([disabled])`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#starting`)))
	step("/pgkill help: the answer in the ack shows, to the requester",
		typeCommand("/pgkill help"),
		chromedp.WaitVisible(helpAnswer))
	step("/pgkill nosuchdb: the usage error shows",
		typeCommand("/pgkill nosuchdb"),
		chromedp.WaitVisible(unknownTgt))
	shot("answers")
	step("type /pgkill as the requester",
		typeCommand("/pgkill 0s app=nightly-report"),
		chromedp.WaitVisible(cancelBtn))
	step("press Terminate: a form whose reason is required", chromedp.Click(terminateBtn), chromedp.WaitVisible(requiredBox))
	step("submit it empty: Slack's own check", chromedp.Click(submitBtn), chromedp.WaitVisible(completeIt))
	step("Back drops it", chromedp.Click(chromedp.CSS(`#view .bk-view-close`)), chromedp.WaitNotPresent(chromedp.CSS(`#view .bk-view`)))
	step("press Cancel: the reason form", chromedp.Click(cancelBtn), chromedp.WaitVisible(reasonBox))
	step("submit a reason that will not do", chromedp.SendKeys(reasonBox, "."), chromedp.Click(submitBtn), chromedp.WaitVisible(refused))
	shot("refused")
	inline, err := chromedp.Run(browser, chromedp.Evaluate[[]string](`[document.querySelector('#view .bk-input-error').textContent,
		document.querySelector('#view textarea').value, String(document.querySelectorAll('button[data-action-id="pgkill_approve"]').length)]`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Say why in a few words (at least three), or paste the incident link.", ".", "0"}; !slices.Equal(inline, want) {
		t.Fatalf("after \".\": error, text kept, approve buttons = %q, want %q", inline, want)
	}
	step("give a reason", chromedp.SendKeys(reasonBox, kb.Backspace+why), chromedp.Click(submitBtn),
		chromedp.WaitNotPresent(chromedp.CSS(`#view .bk-view`)), chromedp.WaitVisible(approveBtn), chromedp.WaitVisible(onCard))
	if err := d.Incident.Wait(done(), "report"); !errors.Is(err, context.Canceled) {
		t.Fatalf("the report ended before anyone approved: %v", err)
	}

	step("become the approver", chromedp.Click(chromedp.CSS(`button[data-as="`+demo.Approver+`"]`)), chromedp.WaitVisible(asApprover),
		chromedp.WaitVisible(approveBtn))
	if n, err := chromedp.Run(browser, chromedp.Evaluate[int](ephemerals)); err != nil || n != 0 {
		t.Errorf("the approver sees %d of the requester's private answers (%v)", n, err)
	}
	step("press Approve", chromedp.Click(approveBtn), chromedp.WaitVisible(chromedp.CSS(`#modal .bk-ok`)))
	shot("confirm")
	step("confirm", chromedp.Click(chromedp.CSS(`#modal .bk-ok`)), chromedp.WaitNotPresent(chromedp.CSS(`#modal .bk-ok`)))

	wait, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	var pgErr *pgconn.PgError
	if err := d.Incident.Wait(wait, "report"); !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("the report's statement ended with %v, want SQLSTATE 57014 (canceled)", err)
	}
	step("see the outcome on the card", chromedp.WaitVisible(outcome))
	approveLeft, err := chromedp.Run(browser, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('.thread button[data-action-id="pgkill_approve"]')].map(b => b.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(approveLeft) != 0 {
		t.Errorf("approve buttons left after the outcome: %v", approveLeft)
	}
	shot("outcome")
}

// typeCommand types text into the page's command box and sends it. It sets
// the box's value (chromedp.Clear would set only its attribute, which no
// longer counts once something was typed) and presses Enter.
func typeCommand(text string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		return chromedp.Void{}, chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#command"), text),
			chromedp.SendKeys(chromedp.CSS("#command"), kb.Enter))
	}
}

// done is a context that has ended: Wait then answers at once.
func done() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
