// Package redact makes PostgreSQL query text safe to post in Slack and to
// log (PGKILL_REDACT), by PostgreSQL's own lexical rules.
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
