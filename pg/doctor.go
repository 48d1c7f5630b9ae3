package pg

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Report is what Doctor found on one target.
type Report struct {
	Target        string
	Auth          string // how pgkill logs in (Target.AuthMode)
	Err           error  // could not connect or read; the rest is empty
	Version       string
	VersionNum    int
	User          string
	Superuser     bool
	RDSSuperuser  bool // member of rds_superuser (Amazon RDS / Aurora)
	SignalBackend bool // may signal other non-superuser roles' sessions
	ReadAllStats  bool // sees other roles' query text and timestamps
	Settings      []Setting
	Problems      []string // what stops pgkill from doing its job, with the fix
	// Missing lists the grants pgkill needs and lacks (pg_read_all_stats,
	// pg_signal_backend): doctor fails while one is missing.
	Missing []string
}

// Setting is one server setting worth reviewing, with advice when it is not
// set.
type Setting struct {
	Name   string
	Value  string
	Advice string // empty when the value looks fine
}

const doctorSQL = `
SELECT current_setting('server_version'), current_setting('server_version_num')::int, current_user,
       r.rolsuper,
       coalesce(pg_has_role(current_user, to_regrole('rds_superuser'), 'USAGE'), false),
       pg_has_role(current_user, 'pg_signal_backend', 'USAGE'),
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
       current_setting('statement_timeout'),
       current_setting('idle_in_transaction_session_timeout'),
       coalesce(current_setting('idle_session_timeout', true), ''),
       current_setting('tcp_keepalives_idle'),
       current_setting('tcp_keepalives_interval'),
       current_setting('tcp_keepalives_count'),
       current_setting('log_min_error_statement'),
       current_setting('max_connections')::int,
       current_setting('deadlock_timeout'),
       (SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout')
FROM pg_roles r WHERE r.rolname = current_user`

// doctorSettingsSQL reads the timeouts as an ordinary session of our role
// sees them (server, database and role settings), on a connection without
// the timeouts pgkill sets for itself.
const doctorSettingsSQL = `
SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'),
       coalesce(current_setting('idle_session_timeout', true), '')`

// Doctor checks what pgkill needs on this target and the timeout settings
// the AWS guidance recommends reviewing, and names the risk of a lock
// pile-up's deadlock checks (deadlockAdvice). It reads shared catalogs, so
// it runs on the lock-table connection. A failure to connect is reported in
// Report.Err, never returned.
func (t *Target) Doctor(ctx context.Context) Report {
	r := Report{Target: t.Name, Auth: t.AuthMode()}
	type read struct {
		r        Report
		s        [7]string
		maxConns int
		deadlock string
		dlMillis int
	}
	ctx, cancel := t.deadline(ctx)
	defer cancel()
	got, err := call(ctx, t.locks, "doctor's read", reads, func(ctx context.Context, c *pgx.Conn) (read, error) {
		var d read
		s := &d.s
		err := c.QueryRow(ctx, doctorSQL).Scan(&d.r.Version, &d.r.VersionNum, &d.r.User, &d.r.Superuser,
			&d.r.RDSSuperuser, &d.r.SignalBackend, &d.r.ReadAllStats, &s[0], &s[1], &s[2], &s[3], &s[4], &s[5], &s[6],
			&d.maxConns, &d.deadlock, &d.dlMillis)
		return d, err
	})
	if err = t.adviseAuth(translate(err)); err != nil {
		r.Err = fmt.Errorf("doctor %s: %w", t.Name, err)
		return r
	}
	s := got.s
	r.Version, r.VersionNum, r.User, r.Superuser = got.r.Version, got.r.VersionNum, got.r.User, got.r.Superuser
	r.RDSSuperuser, r.SignalBackend, r.ReadAllStats = got.r.RDSSuperuser, got.r.SignalBackend, got.r.ReadAllStats
	// pgkill's own sessions run with its own timeouts; report the values
	// other sessions of this role get from one plain connection.
	if err := t.plainSettings(ctx, s[:3]); err != nil {
		r.Problems = append(r.Problems, "could not read the server's own timeouts: "+err.Error())
	}
	r.Settings = []Setting{
		{Name: "statement_timeout", Value: s[0], Advice: adviceIfZero(s[0], "unset: set it per role or database (not too short instance-wide) so runaway statements end by themselves")},
		{Name: "idle_in_transaction_session_timeout", Value: s[1], Advice: adviceIfZero(s[1], "unset: set it (e.g. 5min) so sessions idle in a transaction cannot hold locks and block vacuum for hours")},
	}
	if r.VersionNum >= 140000 {
		r.Settings = append(r.Settings, Setting{Name: "idle_session_timeout", Value: s[2], Advice: adviceIfZero(s[2], "unset: consider it for direct clients; be wary with poolers")})
	}
	r.Settings = append(r.Settings,
		Setting{Name: "tcp_keepalives_idle", Value: s[3], Advice: adviceIfZero(s[3], "0 uses the OS default (often 2 hours): set it (RDS default 300) so dead clients are noticed")},
		Setting{Name: "tcp_keepalives_interval", Value: s[4], Advice: adviceIfZero(s[4], "0 uses the OS default: set it (RDS default 30)")},
		Setting{Name: "tcp_keepalives_count", Value: s[5], Advice: adviceIfZero(s[5], "0 uses the OS default: set it (RDS default 2)")},
		Setting{Name: "log_min_error_statement", Value: s[6], Advice: adviceLogLevel(s[6])},
		Setting{Name: "deadlock_timeout", Value: got.deadlock, Advice: deadlockAdvice(got.maxConns, time.Duration(got.dlMillis)*time.Millisecond)},
	)
	if !r.Superuser {
		if !r.ReadAllStats {
			r.Missing = append(r.Missing, "pg_read_all_stats")
		}
		if !r.SignalBackend {
			r.Missing = append(r.Missing, "pg_signal_backend")
		}
	}
	if !r.ReadAllStats && !r.Superuser {
		r.Problems = append(r.Problems, "cannot see other roles' queries (they read <insufficient privilege> and cannot be signalled safely): GRANT pg_read_all_stats TO "+r.User)
	}
	if !r.SignalBackend && !r.Superuser {
		r.Problems = append(r.Problems, "cannot signal other roles' sessions: GRANT pg_signal_backend TO "+r.User+" (on RDS/Aurora, rds_superuser also has it)")
	}
	if !r.Superuser {
		r.Problems = append(r.Problems, "superuser sessions (rdsadmin on RDS) cannot be signalled: only a superuser can, which pgkill's role should not be")
	}
	return r
}

// pileUpRisk is the number of sessions above which a pile-up's deadlock
// checks, with deadlock_timeout = 1s, hold the lock table (and so new
// connections) for seconds; the measurements are in docs/benchmarks.md.
const pileUpRisk = 500

// deadlockAdvice names the risk of a lock pile-up when max_connections
// lets one grow past pileUpRisk and deadlock_timeout is short: each waiter
// runs a deadlock check once it has waited deadlock_timeout, holding the
// lock table while it does, and together they freeze new connections and
// lock-table reads until they are done.
func deadlockAdvice(maxConns int, timeout time.Duration) string {
	if maxConns < pileUpRisk || timeout >= 10*time.Second {
		return ""
	}
	return fmt.Sprintf("with max_connections = %d, a pile-up of a thousand sessions on one lock runs a deadlock check per session once each has waited %s, "+
		"and together the checks hold the lock table for tens of seconds (measured: 1,000 waiters froze new connections for 21 s median, 47 s at worst): "+
		"new connections and pgkill's blocking tree wait that long. A longer deadlock_timeout (e.g. 10s: real deadlocks are then found 10 s after they form) "+
		"delays the checks, and gives pgkill that long to end the root blocker before they start", maxConns, timeout)
}

func adviceIfZero(v, advice string) string {
	if v == "0" || v == "0ms" || v == "" {
		return advice
	}
	return ""
}

func adviceLogLevel(v string) string {
	switch v {
	case "panic", "fatal", "log":
		return "set it to error (the default) so statements that time out are logged"
	}
	return ""
}

func (t *Target) plainSettings(ctx context.Context, dst []string) error {
	cfg := t.connCfg.Copy()
	delete(cfg.RuntimeParams, "statement_timeout")
	delete(cfg.RuntimeParams, "idle_in_transaction_session_timeout")
	conn, err := t.connect(ctx, cfg)
	if err != nil {
		return translate(err)
	}
	defer conn.Close(context.Background())
	return translate(conn.QueryRow(ctx, doctorSettingsSQL).Scan(&dst[0], &dst[1], &dst[2]))
}
