// Package redact makes PostgreSQL query text safe to post in Slack and to
// log: SQL replaces every literal with ? and drops comments, reading the
// text by PostgreSQL's own lexical rules, and keeps the statement's shape.
// Fingerprint names the full text for audit records, and Mode is the
// PGKILL_REDACT setting.
//
// Query text comes from pg_stat_activity, cut at track_activity_query_size,
// often in the middle of a literal or comment, and it need not be valid
// SQL: a failed statement's text stays there while its transaction is
// aborted. Where PostgreSQL's scanner would stop (an unterminated string,
// junk after a number) SQL hides everything from there on.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
)

// Fingerprint names query text without revealing it: the first 16 hex
// digits of the SHA-256 of the full text, so an incident review can match
// an audit record against the server's own logs.
func Fingerprint(query string) string {
	sum := sha256.Sum256([]byte(query))
	return hex.EncodeToString(sum[:8])
}
