package aws

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg/match"
)

// Discovery says which RDS and Aurora PostgreSQL instances become targets:
// one target per instance endpoint (a pid belongs to one instance: cluster,
// reader and proxy endpoints are never targets), named by the DB instance
// identifier. Read it with ParseDiscovery.
type Discovery struct {
	Regions  []string          // empty: the SDK's configured region
	Tags     map[string]string // instance tags that must all match
	Clusters []string          // only these Aurora clusters' instances; empty: every instance
	IAM      bool              // log in with IAM tokens as User
	Secret   string            // or with this secret's login (ARN or name)
	User     string
	Database string        // default postgres
	SSLMode  string        // default require
	Interval time.Duration // between refreshes; default 1m
}

// Enabled reports whether discovery was configured.
func (d Discovery) Enabled() bool { return d.IAM || d.Secret != "" }

// ParseDiscovery reads PGKILL_RDS_DISCOVER: space-separated settings,
//
//	region=eu-west-1,us-east-1  regions to look in (default: AWS_REGION)
//	tag:KEY=VALUE               instance tag that must match (repeatable: all must)
//	cluster=ID,ID               only these Aurora clusters' instances
//	auth=iam user=NAME          IAM tokens for database user NAME, or
//	secret=ARN|NAME             the login in this Secrets Manager secret
//	database=NAME               default postgres
//	sslmode=MODE                default require
//	interval=DURATION           between refreshes, default 1m, at least 10s
//
// An empty string is no discovery.
func ParseDiscovery(s string) (Discovery, error) {
	d := Discovery{Database: "postgres", SSLMode: "require", Interval: time.Minute}
	if strings.TrimSpace(s) == "" {
		return Discovery{}, nil
	}
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return Discovery{}, fmt.Errorf("%q is not key=value (keys: region, tag:KEY, cluster, auth, user, secret, database, sslmode, interval)", f)
		}
		if tag, ok := strings.CutPrefix(k, "tag:"); ok && tag != "" {
			if d.Tags == nil {
				d.Tags = map[string]string{}
			}
			d.Tags[tag] = v
			continue
		}
		switch k {
		case "region":
			d.Regions = append(d.Regions, match.List(v)...)
		case "cluster":
			d.Clusters = append(d.Clusters, match.List(v)...)
		case "auth":
			if v != "iam" {
				return Discovery{}, fmt.Errorf("auth=%s: the only value is iam (or give secret=ARN)", v)
			}
			d.IAM = true
		case "user":
			d.User = v
		case "secret":
			d.Secret = v
		case "database":
			d.Database = v
		case "sslmode":
			if !slices.Contains([]string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}, v) {
				return Discovery{}, fmt.Errorf("sslmode=%s is not a libpq sslmode", v)
			}
			d.SSLMode = v
		case "interval":
			iv, err := time.ParseDuration(v)
			if err != nil || iv < 10*time.Second {
				return Discovery{}, fmt.Errorf("interval=%s: want a duration of at least 10s", v)
			}
			d.Interval = iv
		default:
			return Discovery{}, fmt.Errorf("unknown setting %q (keys: region, tag:KEY, cluster, auth, user, secret, database, sslmode, interval)", k)
		}
	}
	switch {
	case d.IAM && d.Secret != "":
		return Discovery{}, fmt.Errorf("choose one of auth=iam and secret=")
	case !d.IAM && d.Secret == "":
		return Discovery{}, fmt.Errorf("say how to log in: auth=iam user=NAME, or secret=ARN")
	case d.IAM && d.User == "":
		return Discovery{}, fmt.Errorf("auth=iam needs user=NAME (the database user with GRANT rds_iam)")
	}
	return d, nil
}
