package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/match"
)

// Action is what a signal does to a backend.
type Action string

const (
	// Cancel ends the running statement (pg_cancel_backend, SIGINT); the
	// session survives. It does nothing to an idle session.
	Cancel Action = "cancel"
	// Terminate ends the whole session (pg_terminate_backend, SIGTERM) and
	// rolls back its transaction. The last resort.
	Terminate Action = "terminate"
)

// ParseAction reads "cancel" or "terminate".
func ParseAction(s string) (Action, error) {
	switch Action(s) {
	case Cancel, Terminate:
		return Action(s), nil
	}
	return "", fmt.Errorf("action must be cancel or terminate, not %q", s)
}

// Result is what a signal attempt came to.
type Result string

const (
	// Sent: the identity matched and PostgreSQL accepted the signal. It does
	// not mean the backend has ended yet: Verify says that.
	Sent Result = "sent"
	// Gone: no backend matches the identity any more (the query finished, the
	// pid now runs something else, or the session ended). Nothing was signalled.
	Gone Result = "gone"
	// ServerChanged: the server restarted or failed over since the listing;
	// pids no longer mean what they meant. Nothing was signalled.
	ServerChanged Result = "server-changed"
	// Denied: PostgreSQL refused the signal (SQLSTATE 42501), or would
	// have, or pgkill could not check that it would not. Nothing was
	// signalled.
	Denied Result = "denied"
	// Protected: the session matches a protection rule (Options.Protect)
	// now, though it did not when it was listed: a statement can set its
	// own application_name as it runs. Nothing was signalled.
	Protected Result = "protected"
)

// Outcome describes a signal attempt.
type Outcome struct {
	Action Action
	Result Result
	// Message, for Denied: a message and detail in PostgreSQL's own
	// words; for Protected: the rule the session matches and its user and
	// application_name now.
	Message string
	Fix     string // for Denied: what an administrator can do about it
	// ID is the identity the signal was meant for.
	ID Identity `json:",omitzero"`
	// At is the server's clock_timestamp() right after the signal was sent
	// (zero when nothing was): Verify compares the next statement's
	// query_start with it to detect Verification.MaybeNext.
	At time.Time `json:",omitzero"`
}

// signalSetSQL signals each member of a set only if it still has its
// approved identity, in one autocommit statement for the whole set. It runs
// on the lifeline and, like everything there, reads neither the lock table
// nor a shared catalog, so it answers in a lock pile-up too.
//
//   - pg_stat_get_activity(pid) reads only that one backend's entry (from the
//     status snapshot this statement takes), not the whole view and its
//     joins, so little time passes between the check and kill().
//   - The identity (backend start, query start, server start) is checked in
//     the LATERAL join, and the volatile signal function in the select list
//     runs only for a member that passed it: no row matched, nothing sent.
//   - Cancel also requires state = 'active': an idle session ignores SIGINT,
//     and a session that went idle has finished the approved statement.
//     Terminate spares a session that is plain idle: its statement is over
//     and no transaction is open, so ending it would only hurt the
//     application.
//   - Permission is computed here with PostgreSQL's own rule
//     (signalfuncs.c), so a member we may not signal comes back as not
//     permitted instead of pg_cancel_backend raising 42501 and aborting the
//     statement for every member after it. Which roles are superusers ($7)
//     and pgkill's own role ($8, superuser $9, member of pg_signal_backend
//     $10) come from the catalog read when the lock table was calm; a role
//     not in it ($6, the known roles) is not signalled, as the signal
//     itself would look it up. pg_has_role() and the signal functions find
//     the roles in this session's caches, which that catalog read filled.
//   - Protection rules are checked again here, on the user and
//     application_name the session has now: a statement can change its
//     own application_name without changing query_start. Each rule is a
//     pair of regular expressions ($12 users, $13 applications, from
//     match.Regexp; "" for any) matched under COLLATE "C", which needs no
//     locale; the user's name is the one the catalog read gave its role
//     ($11, in the order of $6), as in the listing: a role not in it
//     matches only rules that name no user.
//   - clock_timestamp() follows the signal in the select list: it is read
//     after kill(), so any statement that started later cannot have been
//     hit.
const signalSetSQL = `
SELECT a.pid IS NOT NULL,
       a.usesysid IS NULL OR a.usesysid = ANY ($7::oid[]),
       a.pid IS NOT NULL AND (a.usesysid IS NULL OR a.usesysid = ANY ($6::oid[])),
       p.permitted,
       r.rule::int,
       coalesce(a.usename, ''),
       coalesce(a.application_name, ''),
       CASE WHEN p.permitted AND r.rule IS NULL THEN
              CASE WHEN $5::text = 'cancel' THEN pg_cancel_backend(a.pid) ELSE pg_terminate_backend(a.pid) END
       END,
       clock_timestamp(),
       pg_postmaster_start_time()
FROM unnest($1::int[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[])
       WITH ORDINALITY AS m(pid, backend_start, query_start, server_start, i)
LEFT JOIN LATERAL (
  SELECT s.pid, s.usesysid, s.application_name,
         CASE WHEN s.usesysid IS NULL THEN '' ELSE ($11::text[])[array_position($6::oid[], s.usesysid)] END AS usename
  FROM pg_stat_get_activity(m.pid) s
  WHERE s.backend_start = m.backend_start
    AND s.query_start = m.query_start
    AND pg_postmaster_start_time() = m.server_start
    AND s.backend_type = 'client backend'
    AND s.pid <> pg_backend_pid()
    AND ($5::text <> 'cancel' OR s.state = 'active')
    AND s.state <> 'idle'
) a ON true
CROSS JOIN LATERAL (
  SELECT CASE WHEN a.pid IS NULL OR NOT (a.usesysid IS NULL OR a.usesysid = ANY ($6::oid[])) THEN NULL
              WHEN a.usesysid IS NULL OR a.usesysid = ANY ($7::oid[]) THEN $9::bool
              ELSE $9::bool OR $10::bool OR pg_has_role($8::oid, a.usesysid, 'USAGE')
         END AS permitted
) p
LEFT JOIN LATERAL (
  SELECT min(x.i) AS rule
  FROM unnest($12::text[], $13::text[]) WITH ORDINALITY AS x(usr, app, i)
  WHERE (x.usr = '' OR a.usename ~ (x.usr COLLATE "C")) AND (x.app = '' OR a.application_name ~ (x.app COLLATE "C"))
) r ON a.pid IS NOT NULL
ORDER BY m.i`

// SignalSet sends action to each backend of ids (all on this target), each
// if and only if it still has its identity, in one statement on the
// lifeline. It returns one Outcome per identity, in order; for each:
//   - Sent: the signal went to exactly that backend (At says when);
//   - Gone or ServerChanged: nothing was signalled to it;
//   - Protected: it matches a protection rule now (Message says which);
//     nothing was signalled to it;
//   - Denied: PostgreSQL's rule forbids it (Message in PostgreSQL's words,
//     Fix how to allow it), or its role appeared while the lock table was
//     busy and could not be checked (Message says so); nothing was
//     signalled to it.
//
// An error (unreachable, timeout, or the answer lost after the statement
// was sent) means the signals may or may not have been sent; the outcomes
// are then empty. The statement is not sent once ctx has ended, and one
// whose answer was lost is not sent again.
func (t *Target) SignalSet(ctx context.Context, action Action, ids []Identity) ([]Outcome, error) {
	if _, err := ParseAction(string(action)); err != nil {
		return nil, err
	}
	n := len(ids)
	pids, starts, queries, servers := make([]int32, n), make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	for i, id := range ids {
		if id.Target != "" && id.Target != t.Name {
			return nil, fmt.Errorf("%s pid %d: identity of target %q sent to %q", action, id.PID, id.Target, t.Name)
		}
		pids[i], starts[i], queries[i], servers[i] = id.PID, id.BackendStart, id.QueryStart, id.ServerStart
	}
	users, apps, err := t.protectRegexps()
	if err != nil {
		return nil, err
	}
	outs, err := onLifeline(ctx, t, "the signal", signals, func(ctx context.Context, c *pgx.Conn) ([]Outcome, error) {
		cat := t.catalog()
		known, names, supers := make([]uint32, 0, len(cat.roles)), make([]string, 0, len(cat.roles)), []uint32{}
		for oid, r := range cat.roles {
			known, names = append(known, oid), append(names, r.name)
			if r.super {
				supers = append(supers, oid)
			}
		}
		rows, err := c.Query(ctx, signalSetSQL, pids, starts, queries, servers, string(action), known, supers,
			cat.me.oid, cat.me.superuser, cat.me.signalBackend, names, users, apps)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		outs := make([]Outcome, 0, n)
		for rows.Next() {
			var (
				matched, super, roleKnown bool
				permitted, sent           *bool
				rule                      *int
				user, app                 string
				at, started               time.Time
			)
			if err := rows.Scan(&matched, &super, &roleKnown, &permitted, &rule, &user, &app, &sent, &at, &started); err != nil {
				return nil, err
			}
			id := ids[len(outs)]
			out := Outcome{Action: action, ID: id}
			switch {
			case sent != nil && *sent:
				out.Result, out.At = Sent, at
			case rule != nil && *rule >= 1 && *rule <= len(t.opts.Protect):
				out.Result = Protected
				out.Message = fmt.Sprintf("%s (user %q, application_name %q)", t.opts.Protect[*rule-1], user, app)
			case matched && !roleKnown:
				out.Result = Denied
				out.Message = "pgkill could not check whether it may signal this session: its role was created after pgkill last read the roles, and reading them now could wait for a lock pile-up to end"
				out.Fix = "try again once the lock table answers (pgkill lists the session with its role's name)"
			case permitted != nil && !*permitted:
				out.Result = Denied
				out.Message, out.Fix = denial(action, super, cat.me.user)
			case !matched && !id.ServerStart.IsZero() && !started.Equal(id.ServerStart):
				out.Result = ServerChanged
			default: // no match, or false: the backend left between the check and kill()
				out.Result = Gone
			}
			outs = append(outs, out)
		}
		return outs, rows.Err()
	})
	var pgErr *Error
	switch {
	case n == 1 && errors.Is(err, ErrPermission) && errors.As(err, &pgErr):
		// Our rule and the server's disagreed (a role changed in between):
		// the statement had one member, so nothing was sent.
		out := Outcome{Action: action, ID: ids[0], Result: Denied, Message: pgErr.Message}
		if pgErr.Detail != "" {
			out.Message += ". " + pgErr.Detail
		}
		out.Fix = "GRANT pg_signal_backend TO pgkill's role; a superuser's session can only be signalled by a superuser"
		return []Outcome{out}, nil
	case err != nil:
		return nil, fmt.Errorf("%s %d backends on %s: %w", action, n, t.Name, err)
	case len(outs) != n:
		return nil, fmt.Errorf("%s on %s: %d outcomes for %d backends", action, t.Name, len(outs), n)
	}
	return outs, nil
}

// denial words a refusal as PostgreSQL 16+ does (signalfuncs.c), with the fix.
func denial(action Action, super bool, role string) (message, fix string) {
	switch {
	case action == Cancel && super:
		message = "permission denied to cancel query. Only roles with the SUPERUSER attribute may cancel queries of roles with the SUPERUSER attribute."
	case super:
		message = "permission denied to terminate process. Only roles with the SUPERUSER attribute may terminate processes of roles with the SUPERUSER attribute."
	case action == Cancel:
		message = `permission denied to cancel query. Only roles with privileges of the role whose query is being canceled or with privileges of the "pg_signal_backend" role may cancel this query.`
	default:
		message = `permission denied to terminate process. Only roles with privileges of the role whose process is being terminated or with privileges of the "pg_signal_backend" role may terminate this process.`
	}
	if super {
		return message, "only a superuser can signal a superuser's session, and pgkill's role should not be one (on RDS/Aurora nobody can signal rdsadmin's sessions)"
	}
	return message, "GRANT pg_signal_backend TO " + role + " (on RDS/Aurora: rds_superuser also has it)"
}

// Signal sends action to the backend with identity id, if and only if it
// still has that identity and is not protected: SignalSet of one. Four
// things can happen:
//   - Sent: the signal went to exactly that backend;
//   - Gone, ServerChanged or Protected: nothing was signalled;
//   - Denied: PostgreSQL refuses, Outcome.Message says why and Fix how to fix it;
//   - an error (unreachable, timeout): the signal may not have been sent.
func (t *Target) Signal(ctx context.Context, action Action, id Identity) (Outcome, error) {
	outs, err := t.SignalSet(ctx, action, []Identity{id})
	if err != nil {
		return Outcome{Action: action, ID: id}, err
	}
	return outs[0], nil
}

// protectRegexps are the protection rules as signalSetSQL takes them: one
// regular expression per rule for the user and one for the application.
func (t *Target) protectRegexps() (users, apps []string, err error) {
	for _, r := range t.opts.Protect {
		u, err := match.Regexp(r.User)
		if err != nil {
			return nil, nil, fmt.Errorf("protection rule %s: %w", r, err)
		}
		a, err := match.Regexp(r.App)
		if err != nil {
			return nil, nil, fmt.Errorf("protection rule %s: %w", r, err)
		}
		users, apps = append(users, u), append(apps, a)
	}
	return users, apps, nil
}
