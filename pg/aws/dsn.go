package aws

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgkill/pgkill/pg"
)

// pgkill's own DSN parameters. They are taken out of the DSN before pgx
// sees it: pgx would send unknown parameters to the server as settings.
const (
	paramAuth   = "pgkill_auth"   // iam
	paramSecret = "pgkill_secret" // a Secrets Manager ARN or name
	paramRegion = "pgkill_region" // when the host name does not tell
)

// Uses reports whether spec's DSN asks for AWS (one of the pgkill_
// parameters), so that callers load the AWS configuration only when needed.
func Uses(spec pg.TargetSpec) bool {
	p, _, err := splitParams(spec.DSN)
	return err != nil || len(p) > 0
}

// Targets applies the pgkill_ parameters of specs (see Resolve), loading the
// AWS configuration only when one of them asks for it. A static target opts
// in with them:
//
//	postgres://pgkill@db1.abc.eu-west-1.rds.amazonaws.com:5432/postgres?pgkill_auth=iam
//	postgres://db1.abc.eu-west-1.rds.amazonaws.com:5432/postgres?pgkill_secret=arn:aws:secretsmanager:…
func Targets(ctx context.Context, specs []pg.TargetSpec) ([]pg.TargetSpec, *AWS, error) {
	if !slices.ContainsFunc(specs, Uses) {
		return specs, nil, nil
	}
	a, err := Load(ctx)
	if err != nil {
		return nil, nil, err
	}
	out := make([]pg.TargetSpec, len(specs))
	for i, s := range specs {
		if out[i], err = a.Resolve(s); err != nil {
			return nil, nil, err
		}
	}
	return out, a, nil
}

// Resolve takes the pgkill_ parameters out of spec's DSN and sets its Auth:
//   - pgkill_auth=iam: an IAM token per new connection for the DSN's user,
//     host and port (5432 when not written); TLS required (sslmode=require)
//     unless the DSN or PGSSLMODE chooses otherwise;
//   - pgkill_secret=ARN|name: user and password (and host, port, dbname when
//     the DSN names no host) from the secret;
//   - pgkill_region: the region, when neither the RDS host name nor the
//     secret's ARN tells it.
//
// A spec without them is returned as it is.
func (a *AWS) Resolve(spec pg.TargetSpec) (pg.TargetSpec, error) {
	params, rest, err := splitParams(spec.DSN)
	if err != nil || len(params) == 0 {
		if err != nil {
			err = fmt.Errorf("target %q: %w", spec.Name, err)
		}
		return spec, err
	}
	fail := func(format string, args ...any) (pg.TargetSpec, error) {
		return pg.TargetSpec{}, fmt.Errorf("target %q: "+format, append([]any{spec.Name}, args...)...)
	}
	for k := range params {
		if k != paramAuth && k != paramSecret && k != paramRegion {
			return fail("unknown DSN parameter %s (pgkill knows %s, %s, %s)", k, paramAuth, paramSecret, paramRegion)
		}
	}
	mode, secret := params[paramAuth], params[paramSecret]
	switch {
	case mode != "" && mode != "iam":
		return fail("%s=%s: the only value is iam", paramAuth, mode)
	case mode == "iam" && secret != "":
		return fail("choose one of %s=iam and %s", paramAuth, paramSecret)
	case mode == "" && secret == "":
		return fail("%s alone: add %s=iam or %s=ARN", paramRegion, paramAuth, paramSecret)
	}
	if mode == "iam" {
		return a.resolveIAM(spec, rest, params[paramRegion])
	}
	return a.resolveSecret(spec, rest, secret, params[paramRegion])
}

func (a *AWS) resolveIAM(spec pg.TargetSpec, dsn, region string) (pg.TargetSpec, error) {
	shape := dsnShape(dsn)
	if !shape.sslmode && os.Getenv("PGSSLMODE") == "" {
		dsn = addParam(dsn, "sslmode", "require") // RDS refuses IAM logins without TLS
	}
	cfg, err := pgconn.ParseConfig(dsn)
	switch {
	case err != nil:
		return pg.TargetSpec{}, fmt.Errorf("target %q: invalid DSN: %s", spec.Name, pg.Redact(err.Error()))
	case !shape.host || strings.HasPrefix(cfg.Host, "/"):
		return pg.TargetSpec{}, fmt.Errorf("target %q: IAM authentication needs the instance's host name in the DSN", spec.Name)
	case !shape.user:
		return pg.TargetSpec{}, fmt.Errorf("target %q: IAM authentication needs the database user in the DSN (postgres://USER@host:5432/db)", spec.Name)
	}
	if region, err = a.region(region, regionOfHost(cfg.Host)); err != nil {
		return pg.TargetSpec{}, fmt.Errorf("target %q: %w", spec.Name, err)
	}
	spec.DSN = dsn
	spec.Auth = a.IAM(net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), region, cfg.User)
	return spec, nil
}

func (a *AWS) resolveSecret(spec pg.TargetSpec, dsn, secret, region string) (pg.TargetSpec, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return pg.TargetSpec{}, fmt.Errorf("target %q: invalid DSN: %s", spec.Name, pg.Redact(err.Error()))
	}
	if region, err = a.region(regionOfARN(secret), region, regionOfHost(cfg.Host)); err != nil {
		return pg.TargetSpec{}, fmt.Errorf("target %q: %w", spec.Name, err)
	}
	spec.DSN = dsn
	spec.Auth = a.Secret(secret, region, !dsnShape(dsn).host)
	return spec, nil
}

// splitParams takes pgkill_ parameters out of a URL or keyword/value DSN.
func splitParams(dsn string) (map[string]string, string, error) {
	if !strings.Contains(dsn, "pgkill_") {
		return nil, dsn, nil
	}
	params := map[string]string{}
	if isURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, "", fmt.Errorf("invalid DSN: %s", pg.Redact(err.Error()))
		}
		q := u.Query()
		for k, v := range q {
			if strings.HasPrefix(k, "pgkill_") {
				params[k] = v[len(v)-1]
				q.Del(k)
			}
		}
		u.RawQuery = q.Encode()
		return params, u.String(), nil
	}
	rest := kvParam.ReplaceAllStringFunc(dsn, func(m string) string {
		sub := kvParam.FindStringSubmatch(m)
		params[sub[1]] = strings.Trim(sub[2], "'")
		return ""
	})
	return params, strings.TrimSpace(rest), nil
}

var kvParam = regexp.MustCompile(`(?:^|\s)(pgkill_[a-z_]+)\s*=\s*('[^']*'|\S+)`)

func isURL(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// shape says which settings a DSN writes itself (pgx fills in defaults, so
// the parsed config cannot tell).
type shape struct{ host, user, sslmode bool }

func dsnShape(dsn string) shape {
	if isURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return shape{}
		}
		q := u.Query()
		return shape{
			host:    u.Hostname() != "" || q.Get("host") != "",
			user:    u.User.Username() != "" || q.Get("user") != "",
			sslmode: q.Has("sslmode"),
		}
	}
	keys := map[string]bool{}
	for _, m := range kvKey.FindAllStringSubmatch(dsn, -1) {
		keys[m[1]] = true
	}
	return shape{host: keys["host"] || keys["hostaddr"], user: keys["user"], sslmode: keys["sslmode"]}
}

var kvKey = regexp.MustCompile(`(?:^|\s)([a-z_]+)\s*=`)

func addParam(dsn, k, v string) string {
	if isURL(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		q.Set(k, v)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return strings.TrimSpace(dsn + " " + k + "=" + v)
}

// regionOfHost reads the region of an RDS host name:
// NAME.ID.REGION.rds.amazonaws.com (also .com.cn, and proxies' names).
func regionOfHost(host string) string {
	labels := strings.Split(strings.ToLower(host), ".")
	for i := 1; i+1 < len(labels); i++ {
		if labels[i] == "rds" && labels[i+1] == "amazonaws" {
			return labels[i-1]
		}
	}
	return ""
}

// regionOfARN reads arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME.
func regionOfARN(arn string) string {
	p := strings.Split(arn, ":")
	if len(p) >= 6 && p[0] == "arn" {
		return p[3]
	}
	return ""
}
