package approval

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/bot/outbox"
	"github.com/pgkill/pgkill/bot/request"
)

// Audit events, one structured log record each (msg "audit", stable field
// names), and a line in PGKILL_AUDIT_CHANNEL when it is set.
const (
	AuditRequest  = "request"
	AuditApprove  = "approve"
	AuditDeny     = "deny"
	AuditWithdraw = "withdraw"
	AuditExpire   = "expire"
	AuditOutcome  = "outcome"
	AuditRefuse   = "refuse" // a command or click the policy refused (log only)
)

var auditSeq atomic.Uint64

// audit records event on r by actor ("" is pgkill itself): in the log at
// once, and in the audit channel through the outbox, in order, never
// waited on.
func (w *Workflow) audit(event, actor string, r request.Request) {
	w.log.Info("audit", auditAttrs(event, actor, r)...)
	if w.cfg.AuditChannel == "" {
		return
	}
	result := ""
	if event == AuditOutcome {
		result = r.Word()
		if r.Bulk() {
			t := r.Tally()
			result = fmt.Sprintf("%d ended, %d skipped, %d still running, %d denied, %d protected, %d failed", t.Ended, t.Skipped, t.Running, t.Denied, t.Protected, t.Failed)
		}
	}
	w.out.Put(outbox.Item{Key: fmt.Sprintf("audit|%d", auditSeq.Add(1)), Channel: w.cfg.AuditChannel, Msg: blocks.AuditLine(event, actor, r, result)})
}

func auditAttrs(event, actor string, r request.Request) []any {
	if actor == "" {
		actor = "pgkill"
	}
	attrs := []any{
		slog.String("event", event), slog.String("request_id", r.ID), slog.String("actor", actor),
		slog.String("requester", r.Requester), slog.String("action", string(r.Action)),
		slog.String("target", r.Backend.Target), slog.Int("pid", int(r.Backend.PID)),
		slog.Time("backend_start", r.Backend.BackendStart), slog.Time("query_start", r.Backend.QueryStart),
		slog.String("db_user", r.Backend.User), slog.String("database", r.Backend.Database),
		slog.String("application", r.Backend.Application), slog.String("channel", r.Channel),
		slog.String("state", string(r.State)), slog.String("query_fingerprint", r.Backend.Fingerprint),
		slog.String("reason", r.Reason),
	}
	if a := r.Auto; a != nil {
		attrs = append(attrs, slog.String("rule", a.Rule), slog.String("mode", a.Mode), slog.String("why", a.Why))
	}
	if r.Bulk() {
		attrs = append(attrs, slog.Int("members", len(r.Members)), slog.String("scope", r.Scope), slog.Any("targets", r.Targets()))
	}
	if event != AuditOutcome {
		return attrs
	}
	attrs = append(attrs, slog.String("result", r.Word()))
	if r.Bulk() {
		t := r.Tally()
		attrs = append(attrs, slog.Int("ended", t.Ended), slog.Int("skipped", t.Skipped), slog.Int("still_running", t.Running),
			slog.Int("denied", t.Denied), slog.Int("protected", t.Protected), slog.Int("failed", t.Failed), slog.Int("maybe_next", t.MaybeNext))
	} else {
		attrs = append(attrs, slog.Bool("ended", r.Verified.Ended), slog.Duration("verify_after", r.Verified.After))
	}
	if e := r.Err + r.NotSent; e != "" { // one of them at most
		attrs = append(attrs, slog.String("error", e))
	}
	return attrs
}
