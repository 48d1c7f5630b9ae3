package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/cluster"
)

// The commands README.md gives run as written: the blocks are read from
// README.md itself, so the test and the README cannot drift apart. They run
// in a copy of the module (so `go build -o pgkill .` does not write into the
// source tree) against a throwaway PostgreSQL whose superuser libpq's
// PGHOST, PGPORT and PGUSER name, as the README asks of the reader.
func TestReadme(t *testing.T) {
	t.Parallel()
	clone := readmeClone(t)
	t.Run("try it: the demo", func(t *testing.T) { readmeDemo(t, clone) })
	t.Run("quick start on your own database", func(t *testing.T) { readmeQuickStart(t, clone) })
}

// Markers in README.md: the ```sh block after each is what the test runs.
const (
	readmeTryMarker        = "<!-- try:"
	readmeQuickStartMarker = "<!-- quickstart:"
)

// readmeCommands returns the commands of the first ```sh block after the
// line of README.md that starts with marker: continuation lines joined,
// comments and blank lines dropped.
func readmeCommands(t *testing.T, marker string) []string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), marker) {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("README.md has no %q marker before the block this test runs", marker)
	}
	i := start + 1
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	if i == len(lines) || strings.TrimSpace(lines[i]) != "```sh" {
		t.Fatalf("README.md: the %q marker must be followed by a ```sh block", marker)
	}
	var cmds []string
	var cur string
	for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		l := strings.TrimSpace(stripComment(lines[i]))
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`) + " "
			continue
		}
		if l = strings.TrimSpace(cur + l); l != "" {
			cmds = append(cmds, l)
		}
		cur = ""
	}
	if len(cmds) == 0 {
		t.Fatalf("README.md: the block after %q holds no command", marker)
	}
	return cmds
}

// stripComment cuts a shell comment (# at the start of a word, outside
// quotes) off a line.
func stripComment(line string) string {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
			return line[:i]
		}
	}
	return line
}

// readmeClone copies the module (not .git, not a built ./pgkill) to a
// temporary directory.
func readmeClone(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == ".git" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, path), 0o755)
		}
		if path == "pgkill" || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, path), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// readmeEnv is this process's environment without anything that would
// choose a database for the commands, plus extra. GOFLAGS gains -trimpath:
// the copy's path then is no part of the build cache's keys, so the go
// commands of a second run compile nothing; it changes no behaviour.
func readmeEnv(extra ...string) []string {
	env := []string{"GOFLAGS=" + strings.TrimSpace(os.Getenv("GOFLAGS")+" -trimpath")}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "GOFLAGS=") {
			continue // PG*, PGKILL_*
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// readmeRun runs one README command in dir with bash, stdin given, and
// returns its combined output and exit code.
func readmeRun(t *testing.T, dir string, env []string, stdin, command string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v\n%s", command, err, out)
	}
	return string(out), 0
}

// readmeBackground starts a README command that ends in & and returns it
// running; its output is collected in out. Cleanup kills its process group.
func readmeBackground(t *testing.T, dir string, env []string, command string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir, cmd.Env = dir, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd, &out
}

// waitExit waits for cmd with a deadline and returns its exit code.
func waitExit(t *testing.T, cmd *exec.Cmd, within time.Duration, what string) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("%s had not exited after %v", what, within)
		return 0
	}
}

// readmeDemo runs README's `go run . demo` line: the page must answer, and
// Ctrl-C (SIGINT to its process group, as a terminal sends it) must stop it
// and remove its cluster. (`go run` itself exits 1 when interrupted, whatever
// the program did, so the exit code says nothing here.) The test line next
// to it is what .ci/run runs.
func readmeDemo(t *testing.T, clone string) {
	var demo string
	for _, c := range readmeCommands(t, readmeTryMarker) {
		if strings.Contains(c, " demo") {
			demo = c
		}
	}
	if demo == "" {
		t.Fatal("README.md: the try block has no demo command")
	}
	// The demo makes its cluster under TMPDIR: one of the test's own, so
	// that what is left there afterwards is the demo's. The postgres OS user
	// (the cluster's owner when running as root) must reach into it.
	tmp, err := os.MkdirTemp("", "pgkill-readme-demo-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", demo)
	cmd.Dir, cmd.Env = clone, readmeEnv("TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	urlRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+/`)
	deadline := time.After(5 * time.Minute) // go run compiles first
	var url string
	for url == "" {
		select {
		case <-exited:
			t.Fatalf("%s ended without printing the page's address:\n%s", demo, out.String())
		case <-deadline:
			t.Fatalf("%s printed no page address within 5 minutes:\n%s", demo, out.String())
		case <-time.After(50 * time.Millisecond):
			url = urlRE.FindString(out.String())
		}
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "incident") {
		t.Errorf("GET %s: %s, the page does not show #incident:\n%.500s", url, resp.Status, body)
	}
	if clusters, _ := filepath.Glob(filepath.Join(tmp, "pgkill-cluster-*")); len(clusters) != 1 {
		t.Errorf("the running demo's cluster directories in TMPDIR: %v, want one", clusters)
	}

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatalf("the demo had not stopped a minute after Ctrl-C:\n%s", out.String())
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "pgkill-cluster-*")); len(left) > 0 {
		t.Errorf("Ctrl-C left the demo's cluster behind: %v\n%s", left, out.String())
	}
	if strings.Contains(out.String(), "pgkill:") {
		t.Errorf("the demo reported an error:\n%s", out.String())
	}
}

// syncBuffer is a bytes.Buffer a process writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// readmeQuickStart runs the quick start block line by line, as a person
// in one terminal would: a line ending in & runs in the background, an
// export changes the environment of the lines after it, PID is the pid the
// listing showed, and y answers pgkill's question.
func readmeQuickStart(t *testing.T, clone string) {
	srv, err := cluster.Start(cluster.Options{})
	if err != nil {
		t.Fatalf("no PostgreSQL server for the quick start (Debian: apt-get install postgresql): %v", err)
	}
	t.Cleanup(func() { srv.Stop() })
	env := readmeEnv("PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(srv.Port), "PGUSER=postgres")

	var (
		sleeper    *exec.Cmd
		sleeperOut *bytes.Buffer
		pid        int32
	)
	for _, c := range readmeCommands(t, readmeQuickStartMarker) {
		switch {
		case strings.HasPrefix(c, "export "):
			out, code := readmeRun(t, clone, env, "", c+` && env -0`)
			if code != 0 {
				t.Fatalf("%s: exit %d\n%s", c, code, out)
			}
			env = strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
		case strings.HasSuffix(c, "&"):
			sleeper, sleeperOut = readmeBackground(t, clone, env, strings.TrimSuffix(c, "&"))
			pid = readmeWaitSleep(t, srv.DSN)
		default:
			stdin := ""
			if readmePID.MatchString(c) {
				if pid == 0 {
					t.Fatalf("%s: no query was started before it", c)
				}
				c = readmePID.ReplaceAllString(c, strconv.Itoa(int(pid)))
				stdin = "y\n"
			}
			out, code := readmeRun(t, clone, env, stdin, c)
			t.Logf("$ %s\n%s", c, out)
			if code != 0 {
				t.Fatalf("%s: exit %d, want 0\n%s", c, code, out)
			}
			readmeCheck(t, clone, c, out, pid)
		}
	}
	if sleeper == nil {
		t.Fatal("the quick start started no query to end")
	}
	code := waitExit(t, sleeper, time.Minute, "the pg_sleep's psql after the cancel")
	if code == 0 || !strings.Contains(sleeperOut.String(), "canceling statement due to user request") {
		t.Errorf("the pg_sleep's psql exited %d, want it cancelled:\n%s", code, sleeperOut)
	}

	// What the quick start warns of: the same query run by a superuser
	// cannot be cancelled by pgkill's role.
	super, _ := readmeBackground(t, clone, env, `psql -c "SELECT pg_sleep(600)"`)
	spid := readmeWaitSleep(t, srv.DSN, pid)
	out, code := readmeRun(t, clone, env, "y\n", "./pgkill cancel "+strconv.Itoa(int(spid)))
	if code != 5 || !strings.Contains(out, "refused: superuser session") {
		t.Errorf("cancel of a superuser's session: exit %d, want 5 and 'refused: superuser session':\n%s", code, out)
	}
	_ = syscall.Kill(-super.Process.Pid, syscall.SIGKILL)
}

// readmePID is the placeholder for the pid the listing shows.
var readmePID = regexp.MustCompile(`\bPID\b`)

// readmeCheck checks what the quick start promises of each command.
func readmeCheck(t *testing.T, clone, command, out string, pid int32) {
	t.Helper()
	switch {
	case strings.Contains(command, "pgkill list"):
		if !regexp.MustCompile(fmt.Sprintf(`\b%d\b.*pg_sleep`, pid)).MatchString(out) {
			t.Errorf("%s does not show pid %d running pg_sleep:\n%s", command, pid, out)
		}
	case strings.Contains(command, "pgkill cancel"):
		if !strings.Contains(out, "ended") {
			t.Errorf("%s does not say the query ended:\n%s", command, out)
		}
	case strings.HasPrefix(command, "go build"):
		if _, err := os.Stat(filepath.Join(clone, "pgkill")); err != nil {
			t.Errorf("%s: the binary is not where README says, ./pgkill: %v", command, err)
		}
	}
}

// readmeWaitSleep waits (a condition with a deadline) until a session
// other than those in seen runs SELECT pg_sleep(600) and has run for over
// 1.5 s, so that `pgkill list -min 1s` must show it, and returns its pid.
func readmeWaitSleep(t *testing.T, dsn string, seen ...int32) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if seen == nil {
		seen = []int32{}
	}
	for {
		var pid int32
		err := conn.QueryRow(ctx, `
SELECT pid FROM pg_stat_activity
WHERE query = 'SELECT pg_sleep(600)' AND state = 'active'
  AND now() - query_start > interval '1.5 s' AND pid <> ALL($1)
ORDER BY backend_start DESC LIMIT 1`, seen).Scan(&pid)
		if err == nil {
			return pid
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no session ran SELECT pg_sleep(600) for 1.5 s within a minute")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
