package pg

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgkill/pgkill/pg/match"
)

// AppName is the application_name of every session pgkill opens. Our own
// sessions are never listed, whatever the filters.
const AppName = "pgkill"

// TargetSpec names one PostgreSQL server (a cluster: listings cover all its
// databases).
type TargetSpec struct {
	Name string
	DSN  string // may hold a password: never print it, use Redact
	// Auth, when set, supplies each new connection's login (pg/aws: IAM
	// tokens, Secrets Manager); nil uses the DSN's own password.
	Auth Auth
	// Origin says where a discovered target came from ("" for a
	// configured one); Role is its replication role (Aurora writer or
	// reader), which a failover changes. Both are shown, never used to
	// connect.
	Origin string
	Role   string
}

var targetName = regexp.MustCompile(`^[a-z0-9_-]+$`)

// ParseTargets reads PGKILL_TARGETS: comma-separated name=DSN pairs. When
// spec is empty, databaseURL (DATABASE_URL) is one target named "default";
// when that is empty too, the target's DSN is empty and pgx reads the libpq
// PG* variables.
func ParseTargets(spec, databaseURL string) ([]TargetSpec, error) {
	if strings.TrimSpace(spec) == "" {
		return []TargetSpec{{Name: "default", DSN: databaseURL}}, nil
	}
	var out []TargetSpec
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		name, dsn, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !ok || strings.TrimSpace(dsn) == "" {
			return nil, fmt.Errorf("entry %d %q is not name=postgres://…", i+1, redact(part))
		}
		if !targetName.MatchString(name) {
			return nil, fmt.Errorf("target name %q must match [a-z0-9_-]+", name)
		}
		if slices.ContainsFunc(out, func(t TargetSpec) bool { return t.Name == name }) {
			return nil, fmt.Errorf("target name %q is used twice", name)
		}
		if err := CheckDSN(dsn); err != nil {
			return nil, fmt.Errorf("target %q: %w", name, err)
		}
		out = append(out, TargetSpec{Name: name, DSN: strings.TrimSpace(dsn)})
	}
	return out, nil
}

// CheckDSN reports whether dsn is a connection string pgx can use; the
// error never shows the password.
func CheckDSN(dsn string) error {
	if _, err := pgxpool.ParseConfig(dsn); err != nil {
		return fmt.Errorf("invalid DSN: %s", redact(err.Error()))
	}
	return nil
}

// Options are the settings every target shares.
type Options struct {
	Protect          match.Rules   // sessions never offered or signalled
	ConnectTimeout   time.Duration // default 5s
	StatementTimeout time.Duration // our own sessions' statement_timeout; default 5s
}

func (o Options) withDefaults() Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 5 * time.Second
	}
	return o
}

// Target is one server with its own small pool. It connects lazily: creating
// one never fails because the server is down. Safe for concurrent use.
type Target struct {
	Name    string
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for Doctor's one plain connection
	opts    Options
	auth    Auth // nil: the DSN's password
	// blockingPIDs makes List read the lock waits with pg_blocking_pids()
	// as it does before PostgreSQL 14, so tests can compare both ways.
	blockingPIDs bool
	treeBudget   time.Duration // 0: the package's treeBudget
}

// NewTarget makes the pool for spec. It does not connect.
func NewTarget(spec TargetSpec, opts Options) (*Target, error) {
	opts = opts.withDefaults()
	cfg, err := pgxpool.ParseConfig(spec.DSN)
	if err != nil {
		return nil, fmt.Errorf("target %q: invalid DSN: %s", spec.Name, redact(err.Error()))
	}
	if err := unresolvedParams(spec.Name, cfg.ConnConfig.RuntimeParams); err != nil {
		return nil, err
	}
	if spec.Auth != nil {
		cfg.BeforeConnect = beforeConnect(spec.Auth)
	}
	cfg.MaxConns = 2
	cfg.MinConns = 0
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > opts.ConnectTimeout {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	}
	// Sent in the startup packet, so no SET statements and no extra round trip.
	// statement_timeout is what really bounds our queries: pgx closes the socket
	// on context cancellation but the server statement would go on.
	rp := cfg.ConnConfig.RuntimeParams
	rp["application_name"] = AppName
	rp["statement_timeout"] = strconv.FormatInt(opts.StatementTimeout.Milliseconds(), 10)
	rp["lock_timeout"] = "2000"
	rp["idle_in_transaction_session_timeout"] = "30000"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("target %q: %s", spec.Name, redact(err.Error()))
	}
	return &Target{Name: spec.Name, pool: pool, connCfg: cfg.ConnConfig.Copy(), opts: opts, auth: spec.Auth}, nil
}

// unresolvedParams refuses pgkill's own DSN parameters (pgkill_auth,
// pgkill_secret, …) that nothing has taken out (pg/aws does): pgx would send
// them to the server as settings, and the server would refuse the login.
func unresolvedParams(name string, params map[string]string) error {
	for k := range params {
		if strings.HasPrefix(k, "pgkill_") {
			return fmt.Errorf("target %q: DSN parameter %s is pgkill's own and was not applied (it needs the AWS support, pg/aws)", name, k)
		}
	}
	return nil
}

// connect opens one plain connection with cfg, with the target's login.
func (t *Target) connect(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	if t.auth != nil {
		if err := beforeConnect(t.auth)(ctx, cfg); err != nil {
			return nil, err
		}
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// Close releases the pool.
func (t *Target) Close() { t.pool.Close() }

// deadline bounds one operation: connecting plus one statement, so a hanging
// server cannot hold a caller longer than that.
func (t *Target) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, t.opts.ConnectTimeout+t.opts.StatementTimeout+time.Second)
}

// do runs fn on a pooled connection and retries once when the server had
// closed that session (restart, failover, pg_terminate_backend), or refused
// a login that the target's Auth can renew (a rotated secret): the user sees
// the second attempt, on a fresh connection, succeed.
func (t *Target) do(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := t.deadline(ctx)
	defer cancel()
	err := fn(ctx)
	if retryable(err) && ctx.Err() == nil {
		t.pool.Reset() // every idle connection may be dead: don't hand out another one
		err = fn(ctx)
	}
	if ctx.Err() == nil && t.authRetry(err) { // also after a reconnection
		err = fn(ctx)
	}
	return t.adviseAuth(translate(err))
}

// Ping checks that the server answers, on a pooled connection.
func (t *Target) Ping(ctx context.Context) error {
	err := t.do(ctx, func(ctx context.Context) error {
		_, err := t.pool.Exec(ctx, "SELECT 1")
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s: %w", t.Name, err)
	}
	return nil
}
