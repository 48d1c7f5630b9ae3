package demo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Incident is the trouble the demo plays on a database: each session a
// connection of its own running one statement until it is signalled or the
// demo stops.
type Incident struct {
	// InPlace is when every session was seen running its statement (or
	// sitting in its transaction): each has run at least d at InPlace+d.
	InPlace  time.Time
	admin    string // DSN that created the tables and can terminate the sessions
	sessions map[string]*session
	order    []string
}

type session struct {
	user, app string
	before    []string // statements that finish first (BEGIN, the UPDATE that takes the lock)
	sql       string   // the statement left running; "" leaves the session idle in its transaction
	conn      *pgx.Conn
	pid       uint32
	done      chan struct{}
	err       error
}

// incidentSchema makes the tables the sessions use. Their pgkill_demo_
// prefix keeps them apart from anything else in a scratch database; a
// previous demo's leftovers are replaced.
const incidentSchema = `
DROP TABLE IF EXISTS pgkill_demo_orders, pgkill_demo_customers, pgkill_demo_accounts;
CREATE TABLE pgkill_demo_customers (id int PRIMARY KEY, region text NOT NULL, api_key text NOT NULL);
INSERT INTO pgkill_demo_customers SELECT g, (ARRAY['eu','us','apac'])[1 + g % 3], md5(g::text) FROM generate_series(1, 3600) g;
CREATE TABLE pgkill_demo_orders (id int PRIMARY KEY, customer_id int NOT NULL, total numeric NOT NULL, note text NOT NULL);
INSERT INTO pgkill_demo_orders SELECT g, 1 + g % 3600, g % 500, CASE WHEN g % 7 = 0 THEN 'refund requested' ELSE 'ok' END FROM generate_series(1, 7200) g;
CREATE TABLE pgkill_demo_accounts (id int PRIMARY KEY, balance numeric NOT NULL);
INSERT INTO pgkill_demo_accounts SELECT g, 100 FROM generate_series(1, 10) g;`

// incidentRoles gives each workload a user of its own, as in production;
// only on the demo's own throwaway cluster.
const incidentRoles = `
CREATE ROLE report LOGIN; CREATE ROLE billing LOGIN; CREATE ROLE worker LOGIN; CREATE ROLE search LOGIN; CREATE ROLE migrate LOGIN;
GRANT SELECT, UPDATE ON pgkill_demo_orders, pgkill_demo_customers, pgkill_demo_accounts TO report, billing, worker, search, migrate;`

const dropSchema = `DROP TABLE IF EXISTS pgkill_demo_orders, pgkill_demo_customers, pgkill_demo_accounts`

// The statements. pg_sleep in a WHERE clause runs once per row (it is
// volatile), which makes a slow query that costs no CPU.
const (
	sqlReport = `SELECT c.region, sum(o.total) AS revenue
FROM pgkill_demo_orders o JOIN pgkill_demo_customers c ON c.id = o.customer_id
WHERE pg_sleep(0.5) IS NOT NULL
GROUP BY c.region ORDER BY revenue DESC`
	sqlHoldLock = `UPDATE pgkill_demo_accounts SET balance = balance - 10 WHERE id = 1`
	sqlWaiter   = `UPDATE pgkill_demo_accounts SET balance = balance + 1 WHERE id = 1`
	// A worker that swallows cancels: only Terminate ends it.
	sqlStubborn = `DO $$
BEGIN
  LOOP
    BEGIN
      PERFORM pg_sleep(1);
    EXCEPTION WHEN query_canceled THEN
      RAISE NOTICE 'cancel ignored, carrying on';
    END;
  END LOOP;
END $$`
	sqlCopy   = `SELECT o.id, o.total FROM pgkill_demo_orders o WHERE o.note ILIKE '%refund%' AND pg_sleep(0.3) IS NOT NULL`
	sqlSecret = `SELECT count(*) FROM pgkill_demo_customers WHERE api_key = 'sk_live_DEMO0nlyN0tReal51xQ' OR pg_sleep(1) IS NULL`
)

// scenario lists the sessions in the order they start: the lock holder
// before its waiters, so that they queue behind it.
func scenario() ([]string, map[string]*session) {
	s := map[string]*session{
		"report":   {user: "report", app: "nightly-report", sql: sqlReport},
		"blocker":  {user: "billing", app: "billing-api", before: []string{"BEGIN", sqlHoldLock}},
		"stubborn": {user: "worker", app: "queue-worker", sql: sqlStubborn},
		"secret":   {user: "migrate", app: "migrate-tool", sql: sqlSecret},
	}
	order := []string{"report", "blocker"}
	for i := 1; i <= 3; i++ {
		w, c := fmt.Sprintf("waiter-%d", i), fmt.Sprintf("copy-%d", i)
		s[w] = &session{user: "billing", app: "billing-api", sql: sqlWaiter}
		s[c] = &session{user: "search", app: "search-api", sql: sqlCopy}
		order = append(order, w, c)
	}
	return append(order, "stubborn", "secret"), s
}

// Play creates the tables (and, with roles, one user per workload), starts
// every session and waits until the incident is in place: the lock held,
// three waiters queued behind it, the rest running.
func Play(ctx context.Context, dsn string, roles bool) (*Incident, error) {
	order, sessions := scenario()
	inc := &Incident{admin: dsn, sessions: sessions, order: order}
	setup := incidentSchema
	if roles {
		setup += incidentRoles
	}
	if err := inc.exec(ctx, setup); err != nil {
		return nil, fmt.Errorf("create the demo tables: %w", err)
	}
	for _, name := range order {
		if err := inc.start(ctx, name, roles); err != nil {
			inc.Stop()
			return nil, fmt.Errorf("start session %s: %w", name, err)
		}
	}
	if err := inc.waitInPlace(ctx); err != nil {
		inc.Stop()
		return nil, err
	}
	inc.InPlace = time.Now()
	return inc, nil
}

func (inc *Incident) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, inc.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql, args...)
	return err
}

func (inc *Incident) start(ctx context.Context, name string, roles bool) error {
	s := inc.sessions[name]
	cfg, err := pgx.ParseConfig(inc.admin)
	if err != nil {
		return err
	}
	if roles {
		cfg.User = s.user
	}
	cfg.RuntimeParams["application_name"] = s.app
	if s.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
		return err
	}
	s.pid = s.conn.PgConn().PID()
	s.done = make(chan struct{})
	for _, sql := range s.before {
		if _, err := s.conn.Exec(ctx, sql); err != nil {
			return err
		}
	}
	if s.sql == "" {
		return nil // idle in transaction until the demo ends or someone terminates it
	}
	go func() {
		defer close(s.done)
		// Not ctx: the statement runs until signalled or Stop terminates it.
		_, s.err = s.conn.Exec(context.Background(), s.sql)
	}()
	return nil
}

// inPlace counts, among the incident's sessions, those idle in a
// transaction, those waiting for a lock, and those active.
const inPlace = `SELECT count(*) FILTER (WHERE state = 'idle in transaction'),
       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'),
       count(*) FILTER (WHERE state = 'active')
FROM pg_stat_activity WHERE pid = ANY($1)`

// waitInPlace waits (up to 30 s) until pg_stat_activity shows the incident.
func (inc *Incident) waitInPlace(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, inc.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	want := len(inc.order) - 1
	for {
		var idle, waiting, active int
		if err := conn.QueryRow(ctx, inPlace, inc.pids()).Scan(&idle, &waiting, &active); err != nil {
			return fmt.Errorf("waiting for the incident to start: %w", err)
		}
		if idle == 1 && waiting == 3 && active == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the incident did not start (idle in transaction %d/1, waiting for the lock %d/3, active %d/%d): %w",
				idle, waiting, active, want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (inc *Incident) pids() []int64 {
	var out []int64
	for _, s := range inc.sessions {
		if s.conn != nil {
			out = append(out, int64(s.pid))
		}
	}
	return out
}

// ErrIdle: the session runs no statement (it sits in its transaction).
var ErrIdle = errors.New("the session runs no statement")

// Wait returns how the named session's statement ended (nil if it
// completed; a *pgconn.PgError with SQLSTATE 57014 if cancelled), or
// ctx's error if it is still running.
func (inc *Incident) Wait(ctx context.Context, name string) error {
	s, ok := inc.sessions[name]
	if !ok {
		return fmt.Errorf("no session %q", name)
	}
	if s.sql == "" {
		return ErrIdle
	}
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PID returns the backend of the named session.
func (inc *Incident) PID(name string) uint32 { return inc.sessions[name].pid }

// Stop ends every session (terminating them: the stubborn one ignores
// cancels and a closed socket goes unnoticed by a backend that never
// writes), then drops the tables.
func (inc *Incident) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := inc.exec(ctx, "SELECT pg_terminate_backend(pid::int) FROM unnest($1::int8[]) AS pid", inc.pids())
	var wg sync.WaitGroup
	for _, s := range inc.sessions {
		if s.conn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.sql != "" {
				select {
				case <-s.done:
				case <-ctx.Done(): // not terminated: drop the socket to free the goroutine
					s.conn.PgConn().Conn().Close()
					<-s.done
				}
			}
			s.conn.Close(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(err, inc.exec(ctx, dropSchema))
}
