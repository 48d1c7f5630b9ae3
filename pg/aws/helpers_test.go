package aws_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/pgkill/pgkill/pg"
	pgaws "github.com/pgkill/pgkill/pg/aws"
	"github.com/pgkill/pgkill/pg/aws/fakeaws"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// newAWS points the SDK at the fake, with the fake's static credentials.
// The SDK's default retries stay on, as in production: over loopback, about
// one call in a hundred meets aws-sdk-go-v2 issue #2737 (the transport
// closes the connection while the answer is read, "use of closed network
// connection"), which the default retryer retries. The fake's refusals
// (AccessDenied, ResourceNotFoundException) are not retried.
func newAWS(t testing.TB, f *fakeaws.Server, region string) *pgaws.AWS {
	t.Helper()
	return pgaws.New(sdkaws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(fakeaws.AccessKey, fakeaws.SecretKey, ""),
		BaseEndpoint: sdkaws.String(f.URL),
		HTTPClient:   f.Client(),
	})
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// recorder wraps an Auth and keeps every login it handed out.
type recorder struct {
	pg.Auth
	mu     sync.Mutex
	logins []pg.Login
}

func (r *recorder) Login(ctx context.Context) (pg.Login, error) {
	l, err := r.Auth.Login(ctx)
	if err == nil {
		r.mu.Lock()
		r.logins = append(r.logins, l)
		r.mu.Unlock()
	}
	return l, err
}

func (r *recorder) all() []pg.Login {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pg.Login(nil), r.logins...)
}

func newTarget(t testing.TB, spec pg.TargetSpec) *pg.Target {
	t.Helper()
	tg, err := pg.NewTarget(spec, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tg.Close)
	return tg
}

// dropSessions ends every session of role, so the next operation needs a
// new connection and a new login.
func dropSessions(t testing.TB, role string) {
	t.Helper()
	pgtest.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
}

func itoa(i int) string { return strconv.Itoa(i) }

func mustDiscovery(tb testing.TB, s string) pgaws.Discovery {
	tb.Helper()
	d, err := pgaws.ParseDiscovery(s)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}
