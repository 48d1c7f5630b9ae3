// Package aws connects pgkill to Amazon RDS and Aurora: IAM and Secrets
// Manager logins, and discovery of instances (PGKILL_RDS_DISCOVER). Secrets
// and tokens never appear in errors, logs or descriptions.
package aws
