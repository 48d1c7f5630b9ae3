package demo_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/bot/demo"
	"github.com/pgkill/pgkill/pg/cluster"
)

// TestNoPostgres runs the built binary where no PostgreSQL server is
// installed: one line says how to install it, and the exit status is 1.
func TestNoPostgres(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "pgkill")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
