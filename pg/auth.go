package pg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Auth supplies the login of every new connection to a target whose
// password is not written in its DSN: an IAM token minted per connection, or
// a user and password read from a secret store (pg/aws provides both).
// Implementations are safe for concurrent use, and never put a password or
// token in an error, in Advice or in String.
type Auth interface {
	// Login returns the credentials for one new connection. An error fails
	// that connection attempt; Target reports it as ErrAuth.
	Login(ctx context.Context) (Login, error)
	// Refused is told that the server refused the last login (SQLSTATE
	// 28P01 or 28000). It reports whether the next Login may bring other
	// credentials (a secret re-read after a rotation): Target then tries the
	// operation once more.
	Refused() bool
	// Advice says what to check when the server keeps refusing the login.
	Advice() string
	// String says how the target authenticates, for doctor and for telling
	// two configurations apart (Fleet.Set): "IAM token for user pgkill
	// (eu-west-1)", "secret arn:…".
	String() string
}

// Login is one connection's credentials. Host, Port and Database replace the
// DSN's when set (a secret that names its server, when the DSN does not).
type Login struct {
	User     string
	Password string
	Host     string
	Port     uint16
	Database string
}

// beforeConnect is pgxpool's hook: it asks auth for this connection's login.
// Fallback configurations (sslmode=prefer tries TLS, then plaintext) share
// the login and follow a host the login names.
func beforeConnect(auth Auth) func(context.Context, *pgx.ConnConfig) error {
	return func(ctx context.Context, cfg *pgx.ConnConfig) error {
		l, err := auth.Login(ctx)
		if err != nil {
			return &Error{Kind: ErrAuth, Message: "could not get the login (" + auth.String() + "): " + redact(err.Error()),
				Hint: "the database was not asked: check where the login comes from (for AWS: pgkill's credentials and IAM policy)", err: err}
		}
		if l.User != "" {
			cfg.User = l.User
		}
		cfg.Password = l.Password
		if l.Database != "" {
			cfg.Database = l.Database
		}
		if l.Host != "" {
			oldHost := cfg.Host
			if cfg.TLSConfig != nil && cfg.TLSConfig.ServerName == oldHost {
				cfg.TLSConfig = cfg.TLSConfig.Clone()
				cfg.TLSConfig.ServerName = l.Host
			}
			cfg.Host = l.Host
			for i, fb := range cfg.Fallbacks {
				c := *fb
				c.Host = l.Host
				if l.Port != 0 {
					c.Port = l.Port
				}
				if c.TLSConfig != nil && c.TLSConfig.ServerName == oldHost {
					c.TLSConfig = c.TLSConfig.Clone()
					c.TLSConfig.ServerName = l.Host
				}
				cfg.Fallbacks[i] = &c
			}
		}
		if l.Port != 0 {
			cfg.Port = l.Port
		}
		return nil
	}
}

// authRetry reports whether err is a refused login after which auth may
// offer other credentials. A refused login happens before any statement is
// sent, so a second attempt can never signal twice.
func (t *Target) authRetry(err error) bool {
	var e *Error
	if t.auth == nil || !errors.As(translate(err), &e) || (e.Code != "28P01" && e.Code != "28000") {
		return false // no login to renew, or not the server's refusal (AWS unreachable: asking again won't help)
	}
	return t.auth.Refused()
}

// adviseAuth adds what to check to a refused login.
func (t *Target) adviseAuth(err error) error {
	var e *Error
	if !errors.As(err, &e) || !errors.Is(e.Kind, ErrAuth) || e.Hint != "" {
		return err
	}
	if t.auth != nil {
		e.Hint = t.auth.Advice()
	} else {
		e.Hint = fmt.Sprintf("check the user and password of target %q (its DSN, PGPASSWORD or ~/.pgpass) and pg_hba.conf", t.Name)
	}
	return err
}

// AuthMode says how the target authenticates: the Auth's description, or
// "password in the DSN".
func (t *Target) AuthMode() string {
	if t.auth == nil {
		return "password in the DSN"
	}
	return t.auth.String()
}
