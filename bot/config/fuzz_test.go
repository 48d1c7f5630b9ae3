package config

import (
	"testing"
)

// FuzzSettings reads the settings an operator types (targets, approvers,
// approvals, reasons, protection and alert rules, discovery) through every
// parser that takes them: each answers with a value or an error, and none
// takes the process down.
func FuzzSettings(f *testing.F) {
	for _, s := range []string{
		"prod=postgres://pgkill:secret@db:5432/app,stage=postgres://x@y/z", "terminate=2,bulk=2", "required", "terminate",
		"user=rdsadmin, user=backup app=pg_dump*", "U0APP,S0DBA", "region=eu-west-1 tag:team=db interval=5m", "=", ",,,", "x=",
		"prod=postgres://%zz", "user=[x", "app=", "bulk=-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var ids IDList
		_ = ids.Decode(s)
		c := Config{Targets: s, Protect: s, ProtectedUsers: s, ProtectedApps: s, RDSDiscover: s, Approvers: ids,
			Approvals: s, Reason: s, Redact: s, AlertIgnore: s, AlertIgnoreApps: s, AlertIgnoreUsers: s,
			LogFormat: s, LogLevel: s, Command: s, Replica: s, Listen: s}
		_ = c.Validate()
		_, _ = c.TargetSpecs()
		_, _ = c.Policy()
		_, _ = c.ProtectRules()
		_, _ = c.AlertIgnoreRules()
		_, _ = c.PGOptions()
	})
}
