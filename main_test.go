package main

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgkill/pgkill/bot/fakeslack"
	"github.com/pgkill/pgkill/pg/pgtest"
)

var binary string // pgkill built once for the whole package

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgkill-bin-*")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "pgkill")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// pgkill runs the built binary with only the given environment.
func pgkill(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

func sleeper(t *testing.T, app string) *pgtest.Session {
	s := pgtest.NewSession(t, pgtest.DSN(t), app)
	s.Run("SELECT pg_sleep(60)")
	// Wait until it is visible as active.
	env := []string{"DATABASE_URL=" + pgtest.DSN(t)}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(pgkill(t, env, "", "list", "-min", "0s", "-app", app).stdout, fmt.Sprint(s.PID)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never listed", app)
		}
	}
	return s
}

func TestCLIList(t *testing.T) {
	s := sleeper(t, "cli_list")
	env := []string{"DATABASE_URL=" + pgtest.DSN(t)}

	r := pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_list")
	if r.code != 0 || !strings.Contains(r.stdout, "TARGET") || !strings.Contains(r.stdout, "pg_sleep(60)") ||
		!strings.Contains(r.stdout, fmt.Sprint(s.PID)) || !strings.Contains(r.stdout, "default") {
		t.Errorf("list table: %+v", r)
	}
	r = pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_list", "-json")
	var out struct {
		Targets  []struct{ Target, Error string }
		Backends []struct {
			PID             int32   `json:"pid"`
			Application     string  `json:"application"`
			DurationSeconds float64 `json:"duration_seconds"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 {
		t.Fatalf("json: %v\n%+v", err, r)
	}
	if len(out.Backends) != 1 || out.Backends[0].PID != s.PID || out.Backends[0].Application != "cli_list" {
		t.Errorf("json backends = %+v", out.Backends)
	}
	r = pgkill(t, env, "", "list", "-min", "1h", "-app", "cli_list")
	if r.code != 0 || !strings.Contains(r.stdout, "no long-running queries") {
		t.Errorf("empty list: %+v", r)
	}
	r = pgkill(t, env, "", "list", "-state", "sleeping")
	if r.code == 0 || !strings.Contains(r.stderr, "state must be") {
		t.Errorf("bad state: %+v", r)
	}
}

func TestCLIListDeadTarget(t *testing.T) {
	s := sleeper(t, "cli_dead")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	env := []string{
		"PGKILL_TARGETS=good=" + pgtest.DSN(t) + ",down=postgres://u:topsecret@" + addr + "/db?sslmode=disable",
		"PGKILL_CONNECT_TIMEOUT=1s",
	}
	r := pgkill(t, env, "", "list", "-min", "0s", "-app", "cli_dead")
	if r.code == 0 || !strings.Contains(r.stdout, fmt.Sprint(s.PID)) || !strings.Contains(r.stderr, "down:") {
		t.Errorf("list with a dead target: %+v", r)
	}
	if strings.Contains(r.stdout+r.stderr, "topsecret") {
		t.Errorf("password printed: %+v", r)
	}
}

func TestCLICancel(t *testing.T) {
	env := []string{"DATABASE_URL=" + pgtest.DSN(t), "PGKILL_VERIFY_TIMEOUT=5s"}
	tests := []struct {
		name  string
		args  func(pid int32) []string
		stdin string
		code  int
		state string // victim's SQLSTATE, "" = still running
		say   string
	}{
		{"yes flag after pid", func(p int32) []string { return []string{"cancel", fmt.Sprint(p), "-yes"} }, "", 0, "57014", "ended: query ended"},
		{"answered y", func(p int32) []string { return []string{"cancel", "-target", "default", fmt.Sprint(p)} }, "y\n", 0, "57014", "ended"},
		{"no answer", func(p int32) []string { return []string{"cancel", fmt.Sprint(p)} }, "", 1, "", "nothing signalled"},
		{"answered n", func(p int32) []string { return []string{"cancel", fmt.Sprint(p)} }, "n\n", 1, "", "nothing signalled"},
		{"terminate", func(p int32) []string { return []string{"terminate", "-yes", fmt.Sprint(p)} }, "", 0, "57P01", "ended: session ended"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sleeper(t, "cli_cancel")
			r := pgkill(t, env, tc.stdin, tc.args(s.PID)...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.say) || !strings.Contains(r.stdout, "pg_sleep(60)") {
				t.Errorf("%+v", r)
			}
			if tc.state == "" {
				if !s.Running() {
					t.Errorf("victim ended: %v", s.Result(t))
				}
				return
			}
			if got := pgtest.SQLState(s.Result(t)); got != tc.state {
				t.Errorf("victim SQLSTATE = %q, want %q", got, tc.state)
			}
		})
	}
}

func TestCLIErrors(t *testing.T) {
	dsn := pgtest.DSN(t)
	tests := []struct {
		name string
		env  []string
		args []string
		say  string
	}{
		{"bad duration", []string{"PGKILL_MIN_DURATION=soon"}, []string{"list"}, "PGKILL_MIN_DURATION"},
		{"negative verify", []string{"PGKILL_VERIFY_TIMEOUT=-1s"}, []string{"list"}, "PGKILL_VERIFY_TIMEOUT"},
		{"malformed target", []string{"PGKILL_TARGETS=prod"}, []string{"list"}, "PGKILL_TARGETS"},
		{"duplicate target", []string{"PGKILL_TARGETS=a=" + dsn + ",a=" + dsn}, []string{"list"}, "used twice"},
		{"unknown command", nil, []string{"frobnicate"}, "unknown command"},
		{"no pid", []string{"DATABASE_URL=" + dsn}, []string{"cancel"}, "usage: pgkill cancel"},
		{"bad pid", []string{"DATABASE_URL=" + dsn}, []string{"cancel", "abc"}, "is not a pid"},
		{"no such pid", []string{"DATABASE_URL=" + dsn}, []string{"cancel", "-yes", "999999"}, "no client backend with pid 999999"},
		{"unknown target", []string{"DATABASE_URL=" + dsn}, []string{"list", "-target", "nope"}, "unknown target"},
		{"two targets need -target", []string{"PGKILL_TARGETS=a=" + dsn + ",b=" + dsn}, []string{"cancel", "1"}, "say which with -target"},
		{"serve without tokens", []string{"DATABASE_URL=" + dsn}, []string{"serve"}, "SLACK_APP_TOKEN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := pgkill(t, tc.env, "", tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.say) {
				t.Errorf("%+v", r)
			}
			// Configuration errors are one line naming the variable.
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n > 0 && strings.HasPrefix(tc.say, "PGKILL_") {
				t.Errorf("want one line, got %d:\n%s", n+1, r.stderr)
			}
		})
	}
}

func TestCLIDoctorVersionHelp(t *testing.T) {
	r := pgkill(t, []string{"DATABASE_URL=" + pgtest.DSN(t)}, "", "doctor")
	if r.code != 0 || !strings.Contains(r.stdout, "== default") || !strings.Contains(r.stdout, "statement_timeout = 0") ||
		!strings.Contains(r.stdout, "superuser=true") {
		t.Errorf("doctor: %+v", r)
	}
	if r := pgkill(t, nil, "", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "pgkill ") {
		t.Errorf("version: %+v", r)
	}
	if r := pgkill(t, nil, "", "help"); r.code != 0 || !strings.Contains(r.stdout, "pgkill list") {
		t.Errorf("help: %+v", r)
	}
}

func serveEnv(t *testing.T, fake *fakeslack.Server, appToken string) []string {
	return []string{
		"DATABASE_URL=" + pgtest.DSN(t), "SLACK_APP_TOKEN=" + appToken, "SLACK_BOT_TOKEN=" + fakeslack.BotToken,
		"SLACK_API_URL=" + fake.APIURL(), "PGKILL_APPROVERS=U0APPROVER,S0DBA", "PGKILL_LOG_FORMAT=json",
	}
}

// pgkill serve answers Slack, and exits 0 on SIGTERM.
func TestServeAndSIGTERM(t *testing.T) {
	fake := fakeslack.New(t)
	cmd := exec.Command(binary, "serve")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, serveEnv(t, fake, fakeslack.AppToken)...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	fake.Eventually(t, 15*time.Second, "pgkill to connect", fake.Connected)
	ack := fake.WaitAck(t, fake.SlashCommand(t, "/pgkill", "U0REQ", "C0INCIDENT", "help"))
	if !strings.Contains(string(ack.Payload), "lists long-running PostgreSQL queries") {
		t.Errorf("help ack = %s", ack.Payload)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pgkill serve did not exit after SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"pgkill stopped"`) || strings.Contains(logs.String(), fakeslack.BotToken) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestServeRejectedToken(t *testing.T) {
	fake := fakeslack.New(t)
	r := pgkill(t, serveEnv(t, fake, "xapp-1-wrong-token"), "", "serve")
	if r.code == 0 || !strings.Contains(r.stderr, "invalid_auth") || strings.Contains(r.stderr, "xapp-1-wrong-token") {
		t.Errorf("%+v", r)
	}
}

func TestManifestCommand(t *testing.T) {
	r := pgkill(t, nil, "", "manifest", "-command", "/killq", "-name", "Query Killer")
	if r.code != 0 || !strings.Contains(r.stdout, "command: \"/killq\"") || !strings.Contains(r.stdout, "socket_mode_enabled: true") {
		t.Errorf("%+v", r)
	}
	if r := pgkill(t, nil, "", "manifest", "-command", "kill q"); r.code == 0 {
		t.Errorf("bad command accepted: %+v", r)
	}
}

// The image's binary is built exactly as the Dockerfile builds it: static,
// so it runs on distroless/static.
func TestStaticBuildAsDockerfile(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	const build = `CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/pgkill .`
	for _, want := range []string{build, "FROM gcr.io/distroless/static-debian12:nonroot", "USER nonroot:nonroot",
		`ENTRYPOINT ["/pgkill"]`, `CMD ["serve"]`, "COPY go.mod go.sum ./\nRUN go mod download"} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	out := filepath.Join(t.TempDir(), "pgkill")
	cmd := exec.Command("sh", "-c", strings.Replace(build, "/out/pgkill", out, 1))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary is dynamically linked (%v)", p.Type)
		}
	}
	if b, err := exec.Command(out, "version").Output(); err != nil || !strings.HasPrefix(string(b), "pgkill ") {
		t.Errorf("static binary: %q %v", b, err)
	}
}

func TestServeStateStoreErrors(t *testing.T) {
	fake := fakeslack.New(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	for _, tc := range []struct{ dsn, say string }{
		{"postgres://u:topsecret@h:notaport/x", "PGKILL_STATE_DSN: invalid DSN"},
		{"postgres://u:topsecret@" + dead + "/x?sslmode=disable&connect_timeout=2", "PGKILL_STATE_DSN: state store"},
	} {
		r := pgkill(t, append(serveEnv(t, fake, fakeslack.AppToken), "PGKILL_STATE_DSN="+tc.dsn), "", "serve")
		if r.code == 0 || !strings.Contains(r.stderr, tc.say) || strings.Contains(r.stderr, "topsecret") {
			t.Errorf("%s: %+v", tc.dsn, r)
		}
	}
}
