package pg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	Protect match.Rules // sessions never offered or signalled
	// ConnectTimeout bounds the TCP connection to a server (default 5s):
	// a host that does not accept it is unreachable.
	ConnectTimeout time.Duration
	// ConnectWait is how long a connection attempt may wait for a server
	// that accepted the connection to start the session, unless the
	// caller that started it says otherwise (WithConnectWait); default
	// ConnectTimeout. In a lock pile-up new sessions wait until it ends.
	ConnectWait time.Duration
	// StatementTimeout is the statement_timeout of pgkill's lifeline
	// (default 5s); lock-table reads run without one (see lockLate).
	StatementTimeout time.Duration
	// Keepalive is how often an open lifeline is checked and its cache of
	// role and database names refreshed when the lock table is calm
	// (default 30s; negative: never).
	Keepalive time.Duration
	// Waiting, when set, is told about a connection attempt that takes
	// long (a progress line), from another goroutine.
	Waiting func(Wait)
}

func (o Options) withDefaults() Options {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.ConnectWait <= 0 {
		o.ConnectWait = o.ConnectTimeout
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 5 * time.Second
	}
	if o.Keepalive == 0 {
		o.Keepalive = 30 * time.Second
	}
	return o
}

// lockLate bounds a lock-table read: a read stalled by a lock pile-up
// answers when the pile-up ends, which can take minutes
// (docs/benchmarks.md), and only then is its connection free again. Its statement_timeout is as
// long: the timeout fires only once the read holds the lock table, by
// which time the read is about done.
const lockLate = 15 * time.Minute

// Target is one server, reached through two dedicated connections, each
// opened on first use and kept:
//
//   - the lifeline runs only statements that need neither the lock table
//     nor a shared catalog (pg_stat_get_activity, the signal, names and
//     permissions from caches warmed when the lock table was calm): in a
//     lock pile-up, whose deadlock checks hold the lock table for seconds
//     to minutes, it still answers in milliseconds;
//   - the lock-table connection reads pg_locks (the blocking tree) and the
//     shared catalogs (doctor): a pile-up may stall it until the pile-up
//     ends, and nothing waits for it longer than its budget.
//
// Creating a Target never connects, so it never fails because the server
// is down. Safe for concurrent use.
type Target struct {
	Name    string
	connCfg *pgx.ConnConfig // the DSN's, with pgkill's settings; copied for each connection
	opts    Options
	auth    Auth // nil: the DSN's password
	dial    time.Duration

	life  *lane
	locks *lane

	catMu sync.Mutex
	cat   *catalog // nil until the lifeline's first connection

	treeMu sync.Mutex
	tree   *future[lockRead] // the latest lock-table read for a listing

	keepOnce sync.Once
	stop     chan struct{}
	kept     chan struct{} // closed when the keeper has ended

	// blockingPIDs makes List read the lock waits with pg_blocking_pids()
	// as it does before PostgreSQL 14, so tests can compare both ways.
	blockingPIDs bool
	treeBudget   time.Duration // 0: the package's treeBudget
}

// NewTarget prepares the connections for spec. It does not connect.
func NewTarget(spec TargetSpec, opts Options) (*Target, error) {
	opts = opts.withDefaults()
	pcfg, err := pgxpool.ParseConfig(spec.DSN) // takes out pool_* parameters, which a DSN may carry
	if err != nil {
		return nil, fmt.Errorf("target %q: invalid DSN: %s", spec.Name, redact(err.Error()))
	}
	cfg := pcfg.ConnConfig
	if err := unresolvedParams(spec.Name, cfg.RuntimeParams); err != nil {
		return nil, err
	}
	dial := opts.ConnectTimeout
	if cfg.ConnectTimeout > 0 && cfg.ConnectTimeout < dial { // connect_timeout in the DSN
		dial = cfg.ConnectTimeout
	}
	// Sent in the startup packet, so no SET statements and no extra round
	// trip. statement_timeout is what really bounds our statements: pgx
	// closes the socket on context cancellation but the server statement
	// would go on.
	rp := cfg.RuntimeParams
	rp["application_name"] = AppName
	rp["lock_timeout"] = "2000"
	rp["idle_in_transaction_session_timeout"] = "30000"
	t := &Target{Name: spec.Name, connCfg: cfg, opts: opts, auth: spec.Auth, dial: dial,
		stop: make(chan struct{}), kept: make(chan struct{})}
	t.life = newLane("lifeline", spec.Name, opts, opts.StatementTimeout+time.Second)
	t.life.open = t.opener(opts.StatementTimeout)
	t.life.warm = t.warmLifeline
	t.locks = newLane("lock-table connection", spec.Name, opts, lockLate+time.Minute)
	t.locks.open = t.opener(lockLate)
	return t, nil
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

// opener makes one connection attempt with statement_timeout st: the TCP
// connection within the dial timeout, the rest within ctx. A login the
// server refused is tried once more when the target's Auth may have other
// credentials (a rotated secret).
func (t *Target) opener(st time.Duration) func(ctx context.Context, accepted func()) (*pgx.Conn, error) {
	return func(ctx context.Context, accepted func()) (*pgx.Conn, error) {
		cfg := t.connCfg.Copy()
		cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(st.Milliseconds(), 10)
		dialer := &net.Dialer{Timeout: t.dial, KeepAlive: 5 * time.Minute}
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				accepted()
			}
			return c, err
		}
		cfg.ConnectTimeout = 0 // ctx bounds the attempt
		conn, err := t.connect(ctx, cfg.Copy())
		if err != nil && ctx.Err() == nil && t.authRetry(err) {
			conn, err = t.connect(ctx, cfg.Copy())
		}
		return conn, t.adviseAuth(translate(err))
	}
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

// Close stops the keeper and closes both connections, each once the
// statement running on it has ended: on the lifeline it ends within its
// statement timeout (a signal in flight is never cut), while a lock-table
// read stalled by a pile-up is cut after a second.
func (t *Target) Close() {
	t.keepOnce.Do(func() { close(t.kept) }) // no keeper will start
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.kept
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); t.life.close(t.life.late) }()
	go func() { defer wg.Done(); t.locks.close(time.Second) }()
	wg.Wait()
}

// deadline bounds an operation whose caller gave no deadline: one
// connection attempt and one statement.
func (t *Target) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	wait := t.opts.ConnectWait
	if d, ok := ctx.Value(connectWaitKey{}).(time.Duration); ok {
		wait = d
	}
	return context.WithTimeout(ctx, max(wait, t.opts.ConnectTimeout)+t.opts.StatementTimeout+time.Second)
}

// onLifeline runs fn, which does eff, on the lifeline and translates its
// error.
func onLifeline[T any](ctx context.Context, t *Target, what string, eff effect, fn func(context.Context, *pgx.Conn) (T, error)) (T, error) {
	ctx, cancel := t.deadline(ctx)
	defer cancel()
	v, err := call(ctx, t.life, what, eff, fn)
	return v, t.adviseAuth(translate(err))
}

// Ping checks that the server answers, on the lifeline.
func (t *Target) Ping(ctx context.Context) error {
	_, err := onLifeline(ctx, t, "a ping", reads, func(ctx context.Context, c *pgx.Conn) (struct{}, error) {
		_, err := c.Exec(ctx, "SELECT 1")
		return struct{}{}, err
	})
	if err != nil {
		return fmt.Errorf("ping %s: %w", t.Name, err)
	}
	return nil
}
