package demo_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/pg/cluster"
	"github.com/pgkill/pgkill/pg/pgtest"
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
	code := pgtest.Main(m)
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

// TestDatabaseURL plays the incident on an existing database after "y",
// with the URL's user for every session, and on Stop leaves no session
// and no table behind.
func TestDatabaseURL(t *testing.T) {
	dsn := pgtest.Database(t, "demo_scratch")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	d, err := demo.Start(ctx, demo.Options{DatabaseURL: dsn, In: strings.NewReader("y\n"), Out: &out, Log: io.Discard})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if d.ClusterDir != "" {
		t.Errorf("a cluster was started (%s) although DATABASE_URL was given", d.ClusterDir)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		d.Stop()
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	const ours = `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name IN
  ('nightly-report', 'billing-api', 'queue-worker', 'search-api', 'migrate-tool')`
	var n int
	if err := conn.QueryRow(ctx, ours).Scan(&n); err != nil || n != 10 {
		t.Errorf("%d incident sessions (%v), want 10", n, err)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var table *string
	if err := conn.QueryRow(ctx, "SELECT to_regclass('pgkill_demo_orders')::text").Scan(&table); err != nil || table != nil {
		t.Errorf("pgkill_demo_orders after Stop: %v, %v", table, err)
	}
	// Terminated backends leave pg_stat_activity a moment after the signal.
	for {
		if err := conn.QueryRow(ctx, ours).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d incident sessions left after Stop", n)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

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
