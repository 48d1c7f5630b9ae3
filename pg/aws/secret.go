package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/pgkill/pgkill/pg"
)

// secretAuth logs in with the user and password of a Secrets Manager secret
// in the JSON form that RDS-managed and rotation-function secrets use. The
// secret is read when a connection is made, reused for SecretTTL, and read
// again at once after a refused login: after a rotation the first new
// connection fails, the operation is retried once with the new password,
// and nobody notices.
type secretAuth struct {
	a       *AWS
	id      string // ARN or name
	region  string
	useHost bool // the DSN names no host: take host, port, dbname from the secret

	mu      sync.Mutex
	cached  *pg.Login
	fetched time.Time
}

// Secret returns the Auth of a target whose login is in secret id (ARN or
// name) in region. With useHost, the secret's host, port and dbname are
// used too.
//
// Targets naming the same secret share one Auth: one read serves them all,
// and a refusal on one makes the next login of every one re-read it.
func (a *AWS) Secret(id, region string, useHost bool) pg.Auth {
	key := fmt.Sprintf("%s\x00%s\x00%t", id, region, useHost)
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.secretAuths[key]
	if !ok {
		s = &secretAuth{a: a, id: id, region: region, useHost: useHost}
		a.secretAuths[key] = s
	}
	return s
}

func (s *secretAuth) Login(ctx context.Context) (pg.Login, error) {
	s.mu.Lock()
	defer s.mu.Unlock() // one read at a time: concurrent connections share it
	if s.cached != nil && s.a.now().Sub(s.fetched) < s.a.SecretTTL {
		return *s.cached, nil
	}
	l, err := s.read(ctx)
	if err != nil {
		return pg.Login{}, err
	}
	s.cached, s.fetched = &l, s.a.now()
	return l, nil
}

// secretJSON is the secret's shape. The port is a number in RDS-managed
// secrets and sometimes a string in hand-made ones.
type secretJSON struct {
	Username string          `json:"username"`
	Password string          `json:"password"`
	Host     string          `json:"host"`
	Port     json.RawMessage `json:"port"`
	DBName   string          `json:"dbname"`
}

// read fetches the secret. Its errors never quote the secret's value (nor
// the JSON decoder's message, which may).
func (s *secretAuth) read(ctx context.Context) (pg.Login, error) {
	out, err := s.a.secretsClient(s.region).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &s.id})
	if err != nil {
		return pg.Login{}, fmt.Errorf("read secret %s: %w", s.id, err)
	}
	if out.SecretString == nil {
		return pg.Login{}, fmt.Errorf("secret %s has no SecretString (binary secrets are not read)", s.id)
	}
	var v secretJSON
	if err := json.Unmarshal([]byte(*out.SecretString), &v); err != nil || v.Username == "" || v.Password == "" {
		return pg.Login{}, fmt.Errorf("secret %s is not a JSON object with username and password", s.id)
	}
	l := pg.Login{User: v.Username, Password: v.Password}
	if s.useHost {
		port, err := parsePort(v.Port)
		if err != nil || v.Host == "" {
			return pg.Login{}, fmt.Errorf("secret %s: the DSN names no host, and the secret has no host and port", s.id)
		}
		l.Host, l.Port, l.Database = v.Host, port, v.DBName
	}
	return l, nil
}

func parsePort(raw json.RawMessage) (uint16, error) {
	if len(raw) == 0 {
		return 5432, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, errors.New("bad port")
	}
	return uint16(p), nil
}

// Refused forgets the cached login, so the retry reads the secret again.
func (s *secretAuth) Refused() bool {
	s.mu.Lock()
	s.cached = nil
	s.mu.Unlock()
	return true
}

func (s *secretAuth) Advice() string {
	return fmt.Sprintf("the secret was read again and its login is still refused: check that secret %s holds the current "+
		"username and password of the database role (a rotation may have failed half way: compare its AWSCURRENT and "+
		"AWSPENDING versions) and that pg_hba.conf admits the role", s.id)
}

func (s *secretAuth) String() string { return "Secrets Manager secret " + s.id }
