package pg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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

// ParseTargets reads PGKILL_TARGETS: name=DSN entries separated by commas.
// When spec is empty, databaseURL (DATABASE_URL) is one target named
// "default"; when that is empty too, the target's DSN is empty and pgx reads
// the libpq PG* variables. Errors start with the variable they are about.
//
// An entry ends only at a comma that is followed by the next entry's
// "name=" and is not inside a single-quoted keyword/value: a comma in a
// password, a query parameter or a multi-host URL (h1,h2) stays in its DSN.
// A password holding ",name=" must be percent-encoded in a URL (%2C) or
// quoted in keyword/value form (password='a,b=c'); an "@" in a URL password
// must be written %40. No error echoes an entry's text unmasked.
func ParseTargets(spec, databaseURL string) ([]TargetSpec, error) {
	if strings.TrimSpace(spec) == "" {
		if databaseURL != "" {
			if err := CheckDSN(databaseURL); err != nil {
				return nil, fmt.Errorf("DATABASE_URL: %w", err)
			}
		}
		return []TargetSpec{{Name: "default", DSN: databaseURL}}, nil
	}
	var out []TargetSpec
	for i, part := range splitTargets(spec) {
		part = strings.TrimSpace(part)
		name, dsn, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if ok && strings.TrimSpace(dsn) != "" && !targetName.MatchString(name) && !strings.ContainsAny(name, ":/@?") && len(name) <= 40 {
			return nil, fmt.Errorf("PGKILL_TARGETS: target name %q must match [a-z0-9_-]+", name)
		}
		if !ok || strings.TrimSpace(dsn) == "" || !targetName.MatchString(name) {
			return nil, fmt.Errorf("PGKILL_TARGETS: entry %d (%s) is not name=postgres://…: each entry is a name of a-z, 0-9, _ and - then = then its DSN",
				i+1, describeEntry(part))
		}
		if slices.ContainsFunc(out, func(t TargetSpec) bool { return t.Name == name }) {
			return nil, fmt.Errorf("PGKILL_TARGETS: target name %q is used twice", name)
		}
		if err := CheckDSN(dsn); err != nil {
			return nil, fmt.Errorf("PGKILL_TARGETS: target %q: %w", name, err)
		}
		// A comma is kept in a DSN unless "name=" follows it, so an entry
		// whose "=" was forgotten ("…/db,prod") would be swallowed into the
		// database name of the entry before it: say so.
		if cfg, err := pgx.ParseConfig(dsn); err == nil && strings.Contains(cfg.Database, ",") {
			// Not shown: with an unencoded '/' or '?' in a password, pgx may
			// read part of it as the database name.
			return nil, fmt.Errorf("PGKILL_TARGETS: target %q: its database name holds a comma: is what follows the comma a target without its name=…? (in a password, write '/', '?' and '#' as %%2F, %%3F, %%23)",
				name)
		}
		out = append(out, TargetSpec{Name: name, DSN: strings.TrimSpace(dsn)})
	}
	return out, nil
}

// describeEntry shows a malformed entry's shape without its text, which may
// hold a password: only a leading name (letters, digits, _ and -) is shown.
func describeEntry(part string) string {
	if part == "" {
		return "empty"
	}
	lead := part
	if i := strings.IndexFunc(part, func(r rune) bool { return !(r == '_' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)) }); i >= 0 {
		lead = part[:i]
	}
	if lead == part && len(part) <= 40 {
		return fmt.Sprintf("%q", part)
	}
	return fmt.Sprintf("%d characters, not shown: it may hold a password", utf8.RuneCountInString(part))
}

// nextEntry matches what starts an entry after a separating comma.
var nextEntry = regexp.MustCompile(`^\s*[a-z0-9_-]+\s*=`)

// splitTargets splits spec at the commas that separate entries (see
// ParseTargets).
func splitTargets(spec string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(spec); i++ {
		switch spec[i] {
		case '\\':
			if quoted {
				i++ // an escaped character inside quotes
			}
		case '\'':
			// Only a keyword/value value opens a quote (password='…'): an
			// apostrophe inside a URL password does not.
			if quoted || strings.HasSuffix(strings.TrimRight(spec[:i], " \t"), "=") {
				quoted = !quoted
			}
		case ',':
			if !quoted && nextEntry.MatchString(spec[i+1:]) {
				out = append(out, spec[start:i])
				start = i + 1
			}
		}
	}
	return append(out, spec[start:])
}

// CheckDSN reports whether dsn is a connection string pgx can use; the
// error never shows the password. A host holding "@" is refused: it means
// an unencoded "@" in the password moved part of it into the host name,
// where every connection error would print it.
func CheckDSN(dsn string) error {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx echoes the DSN in its error. Only a well-formed URL has a
		// password whose every character redact can find; any other text
		// may be a password cut in pieces, and is not shown at all.
		if u, uerr := url.Parse(strings.TrimSpace(dsn)); uerr == nil && u.Host != "" && strings.HasPrefix(u.Scheme, "postgres") {
			return fmt.Errorf("invalid DSN: %s", redact(err.Error()))
		}
		return errors.New("invalid DSN: pgx reads it neither as a postgres:// URL (check the host, the port and the characters of the password) " +
			"nor as keyword=value pairs; it is not shown, as it may hold a password. In a URL password write , @ / ? # : % and a space as %2C %40 %2F %3F %23 %3A %25 %20")
	}
	hosts := []string{cfg.ConnConfig.Host}
	for _, f := range cfg.ConnConfig.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	for _, h := range hosts {
		if strings.Contains(h, "@") {
			return errors.New("invalid DSN: the host part holds an '@': write an '@' in a password as %40 (the DSN is not shown: it may hold a password)")
		}
	}
	// Connection errors name the database: with an unencoded '/' in the
	// password ("u:12345/rest@h/db" reads as port 12345, database
	// "rest@h/db"), part of the password would be printed with each one.
	if strings.Contains(cfg.ConnConfig.Database, "@") {
		return errors.New("invalid DSN: the database name holds an '@': write a '/' in a password as %2F and an '@' as %40 (the DSN is not shown: it may hold a password)")
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
