// Package aws connects pgkill to Amazon RDS and Aurora: IAM database
// authentication (a new token minted for every new connection), logins read
// from AWS Secrets Manager (re-read after a refused login, so a rotation
// goes unnoticed), and discovery of a fleet's instances (DescribeDBInstances
// and DescribeDBClusters), refreshed on an interval into a pg.Fleet.
//
// AWS credentials always come from the SDK's standard chain (environment,
// shared config, web identity on EKS, ECS task role, instance profile),
// never from pgkill's own settings. Secrets and tokens never appear in
// errors, logs or descriptions.
//
// Static targets opt in with DSN parameters that Targets takes out before
// pgx sees them:
//
//	postgres://pgkill@db1.abc.eu-west-1.rds.amazonaws.com:5432/postgres?pgkill_auth=iam
//	postgres://db1.abc.eu-west-1.rds.amazonaws.com:5432/postgres?pgkill_secret=arn:aws:secretsmanager:…
//
// Discovery is configured with one line, read by ParseDiscovery.
package aws
