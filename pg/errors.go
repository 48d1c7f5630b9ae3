package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors. PostgreSQL errors are translated into these at this
// package's boundary, by SQLSTATE and never by message text: the texts changed
// in PostgreSQL 16 and can be localised. Callers use errors.Is and never import
// pgconn.
var (
	// ErrPermission: the server refused (SQLSTATE 42501).
	ErrPermission = errors.New("permission denied")
	// ErrTimeout: our own statement_timeout or lock_timeout fired (57014,
	// 55P03), or the context deadline passed.
	ErrTimeout = errors.New("timed out")
	// ErrUnavailable: the server could not be reached, or closed our session
	// (57P01-57P03, network errors).
	ErrUnavailable = errors.New("database unavailable")
	// ErrNotFound: no client backend with that pid.
	ErrNotFound = errors.New("no such backend")
	// ErrHidden: a session with that pid exists but belongs to another role
	// that pgkill's role may not see (no pg_read_all_stats): it cannot be
	// identified, so it is never signalled.
	ErrHidden = errors.New("session hidden from pgkill's role")
	// ErrAuth: the server refused pgkill's login (28P01, 28000: a wrong
	// password, an expired or refused IAM token), or no login could be
	// obtained (AWS unreachable). Error.Hint says what to check.
	ErrAuth = errors.New("authentication failed")
)

// Error carries the server's own words next to the sentinel, so a user sees
// PostgreSQL's message and detail, while code branches on Kind.
type Error struct {
	Kind    error  // one of the sentinels above, or nil when unclassified
	Code    string // SQLSTATE, when the server answered
	Message string
	Detail  string
	Hint    string // what to check, for ErrAuth; never a secret
	err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	if e.Code != "" {
		msg += " [SQLSTATE " + e.Code + "]"
	}
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return redact(msg)
}

func (e *Error) Unwrap() []error { return []error{e.Kind, e.err} }

// translate maps a pgx error onto the sentinels. It returns err unchanged
// when it is nil.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var own *Error
	if errors.As(err, &own) { // translated already, perhaps in pgkill's own words
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		e := &Error{Code: pgErr.Code, Message: pgErr.Message, Detail: pgErr.Detail, err: err}
		switch pgErr.Code {
		case "42501":
			e.Kind = ErrPermission
		case "57014", "55P03":
			e.Kind = ErrTimeout
		case "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004":
			e.Kind = ErrUnavailable
		case "28P01", "28000":
			e.Kind = ErrAuth
		}
		return e
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPermission) || errors.Is(err, ErrAuth) {
		return err
	}
	var netErr net.Error
	msg := message(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return &Error{Kind: ErrTimeout, Message: msg, err: err}
	case pgconn.Timeout(err):
		return &Error{Kind: ErrTimeout, Message: msg, err: err}
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Kind: ErrUnavailable, Message: msg, err: err}
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return &Error{Kind: ErrUnavailable, Message: msg, err: err}
	}
	return &Error{Message: msg, err: err}
}

// message is err's text, passwords masked. A failed connection is said in
// one line: pgx lists each address it tried, and each twice when it tried
// with TLS and then without (sslmode=prefer), with the address repeated in
// each cause; here each address and cause comes once.
func message(err error) string {
	var connErr *pgconn.ConnectError
	if !errors.As(err, &connErr) {
		return redact(err.Error())
	}
	var (
		parts []string
		seen  = map[string]bool{}
	)
	for _, e := range leaves(errors.Unwrap(connErr)) {
		part := e.Error()
		var op *net.OpError
		var dns *net.DNSError
		switch {
		case errors.As(e, &dns):
			part = "lookup " + dns.Name + ": " + dns.Err
		case errors.As(e, &op):
			cause := op.Err.Error()
			var errno syscall.Errno
			if errors.As(op.Err, &errno) {
				cause = errno.Error()
			}
			part = cause
			if op.Addr != nil {
				part = op.Addr.String() + ": " + cause
			}
		}
		if !seen[part] {
			seen[part] = true
			parts = append(parts, part)
		}
	}
	who := "user " + connErr.Config.User
	if connErr.Config.Database != "" {
		who += ", database " + connErr.Config.Database
	}
	return redact(fmt.Sprintf("could not connect (%s): %s", who, strings.Join(parts, "; ")))
}

// leaves flattens joined errors (errors.Join), also when wrapped, into
// their members.
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if w, ok := err.(interface{ Unwrap() error }); ok {
		if inner := leaves(w.Unwrap()); len(inner) > 1 {
			return inner
		}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// retryable says whether a statement that only reads may be run again on
// a fresh connection: the server killed the session (failover, restart,
// pg_terminate_backend) before or while it got our statement, or the
// connection broke with no answer. A statement that signals is never run
// again on these grounds (see unsent): the first run may have signalled.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if unsent(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03":
			return true
		}
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// unsent says whether err proves that the statement never left pgkill:
// pgx wrote none of it (pgconn.SafeToRetry). Only then may a statement
// that signals be sent again.
func unsent(err error) bool {
	return err != nil && pgconn.SafeToRetry(err)
}

// Passwords in URLs (postgres://user:secret@host) and in keyword/value DSNs
// (password=secret) are masked wherever text may leave the process, even in
// text that is not a valid DSN (a fragment cut at a comma, an unencoded "@"
// or space in the password, an unterminated quote).
var (
	// urlUser is the start of a URL's userinfo that has a password: what
	// follows the colon is the password.
	urlUser = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:`)
	// kvPassword is password=value, value quoted (perhaps unterminated: then
	// to the end) or up to the next space.
	kvPassword = regexp.MustCompile(`(?i)(password\s*[=:]\s*)('(?:[^'\\]|\\.)*'?|\S+)`)
)

const mask = "xxxxx"

func redact(s string) string {
	return kvPassword.ReplaceAllString(redactURLs(s), "${1}"+mask)
}

// redactURLs masks what follows "scheme://user:" up to the last "@" before
// the next URL (a password may hold "@", ":" and "/"), or, with no "@", to
// the end of the word: without an "@" it cannot be told from a port, and a
// masked port costs less than a leaked password.
func redactURLs(s string) string {
	var b strings.Builder
	for {
		loc := urlUser.FindStringIndex(s)
		if loc == nil {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:loc[1]])
		b.WriteString(mask)
		rest := s[loc[1]:]
		limit := len(rest)
		if next := urlUser.FindStringIndex(rest); next != nil {
			limit = next[0]
		}
		if at := strings.LastIndexByte(rest[:limit], '@'); at >= 0 {
			s = rest[at:]
			continue
		}
		end := strings.IndexFunc(rest, unicode.IsSpace)
		if end < 0 {
			end = len(rest)
		}
		s = rest[end:]
	}
}

// Redact masks passwords in DSNs embedded in s.
func Redact(s string) string { return redact(s) }
