package demo_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/pg/cluster"
)

// TestNoPostgres runs the built binary where no PostgreSQL server is
// installed: one line says how to install it, and the exit status is 1.
func TestNoPostgres(t *testing.T) {
	bin := build(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "demo")
	cmd.Env = []string{"PATH=", cluster.EnvSearch + "=", "HOME=" + t.TempDir()} // no DATABASE_URL either
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "apt-get install postgresql") || !strings.Contains(lines[0], "brew install postgresql") {
		t.Errorf("stderr is not one line saying how to install PostgreSQL:\n%s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}
}

// TestInterrupt runs the built binary as a person would: it prints the
// page's address, serves it, and on Ctrl-C (SIGINT) stops, exits 0 and
// leaves no cluster behind.
func TestInterrupt(t *testing.T) {
	bin := build(t)
	cmd := exec.Command(bin, "demo")
	cmd.Env = append(os.Environ(), "DATABASE_URL=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // only if the test fails before the SIGINT
	lines := bufio.NewScanner(out)
	var url, dir string
	for lines.Scan() && dir == "" {
		line := lines.Text()
		if _, u, ok := strings.Cut(line, "open "); ok && url == "" {
			url = u
		}
		if _, d, ok := strings.Cut(line, "throwaway cluster in "); ok {
			dir, _, _ = strings.Cut(d, " ")
		}
	}
	if url == "" || dir == "" {
		t.Fatalf("no address or cluster directory printed; stderr:\n%s", stderr.String())
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %s", url, resp.Status)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("cluster directory: %v", err)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	var rest strings.Builder
	for lines.Scan() {
		rest.WriteString(lines.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGINT: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(rest.String(), "nothing left behind") {
		t.Errorf("after SIGINT it said %q", rest.String())
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after Ctrl-C: %v", dir, err)
	}
}

// build builds pgkill once per test binary.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgkill-demo-test-*")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "pgkill")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// TestMain removes the built binary afterwards.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// TestDeclined: with DATABASE_URL, anything but y leaves the database
// untouched (the URL here leads nowhere: connecting would fail), and the
// question does not show the password.
func TestDeclined(t *testing.T) {
	for _, answer := range []string{"", "\n", "n\n", "no\n", "yes please\n"} {
		var out bytes.Buffer
		_, err := demo.Start(context.Background(), demo.Options{
			DatabaseURL: "postgres://me:s3cret@127.0.0.1:1/scratch", In: strings.NewReader(answer), Out: &out,
		})
		if !errors.Is(err, demo.ErrDeclined) {
			t.Errorf("answer %q: err = %v, want ErrDeclined", answer, err)
		}
		if q := out.String(); !strings.Contains(q, "Use a scratch database only. Continue? [y/N]") || strings.Contains(q, "s3cret") {
			t.Errorf("answer %q: question %q", answer, q)
		}
	}
}
