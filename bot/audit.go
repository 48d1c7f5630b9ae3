package bot

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
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

func (b *Bot) audit(ctx context.Context, event, actor string, a Approval) {
	attrs := []any{
		slog.String("event", event), slog.String("request_id", a.ID), slog.String("actor", auditActor(actor)),
		slog.String("requester", a.Requester), slog.String("action", string(a.Action)),
		slog.String("target", a.Backend.Target), slog.Int("pid", int(a.Backend.PID)),
		slog.Time("backend_start", a.Backend.BackendStart), slog.Time("query_start", a.Backend.QueryStart),
		slog.String("db_user", a.Backend.User), slog.String("database", a.Backend.Database),
		slog.String("application", a.Backend.Application), slog.String("channel", a.Channel),
		slog.String("state", string(a.State)), slog.String("query_fingerprint", a.Backend.Fingerprint),
		slog.String("reason", a.Reason),
	}
	if a.bulk() {
		attrs = append(attrs, slog.Int("members", len(a.Members)), slog.String("scope", a.Scope), slog.Any("targets", a.targets()))
		if event == AuditOutcome {
			t := blocks.Count(a.Results)
			attrs = append(attrs, slog.Int("ended", t.Ended), slog.Int("skipped", t.Skipped), slog.Int("still_running", t.Running),
				slog.Int("denied", t.Denied), slog.Int("failed", t.Failed), slog.Int("maybe_next", t.MaybeNext))
		}
	}
	if event == AuditOutcome && a.bulk() {
		attrs = append(attrs, slog.String("result", outcomeWord(a)))
	} else if event == AuditOutcome {
		attrs = append(attrs, slog.String("result", outcomeWord(a)), slog.Bool("ended", a.Verified.Ended),
			slog.Duration("verify_after", a.Verified.After))
	}
	if event == AuditOutcome {
		if e := a.Err + a.NotSent; e != "" { // one of them at most
			attrs = append(attrs, slog.String("error", e))
		}
	}
	b.log.Info("audit", attrs...)
	if b.cfg.AuditChannel == "" {
		return
	}
	result := ""
	if event == AuditOutcome {
		result = outcomeWord(a)
		if a.bulk() {
			t := blocks.Count(a.Results)
			result = fmt.Sprintf("%d ended, %d skipped, %d still running, %d denied, %d failed", t.Ended, t.Skipped, t.Running, t.Denied, t.Failed)
		}
	}
	b.postAudit(blocks.AuditLine(event, actor, a.view(nil), result))
}

// postAudit posts a line to the audit channel in the background, after the
// line before it: the record is already in the log, and nothing — least of
// all a signal — waits on Slack for it.
func (b *Bot) postAudit(m blocks.Message) {
	b.auditMu.Lock()
	prev := b.auditTail
	mine := make(chan struct{})
	b.auditTail = mine
	b.auditMu.Unlock()
	b.goWork(func(ctx context.Context) {
		defer close(mine)
		if prev != nil {
			<-prev
		}
		_, _ = b.post(ctx, b.cfg.AuditChannel, "", m)
	})
}

// auditActor names who acted in a record: a Slack user ID, or pgkill.
func auditActor(actor string) string {
	if actor == "" {
		return "pgkill"
	}
	return actor
}

// outcomeWord is the one-word result for logs and metrics.
func outcomeWord(a Approval) string {
	switch {
	case a.bulk():
		return "bulk" // the counts are in the record's own fields
	case a.Err != "", a.NotSent != "":
		return "error"
	case a.Outcome.Result == pg.Sent && a.VerifyErr != "":
		return "unverified"
	case a.Outcome.Result == pg.Sent && a.Verified.Ended:
		return "ended"
	case a.Outcome.Result == pg.Sent:
		return "still-running"
	}
	return string(a.Outcome.Result)
}

// refuse tells user privately why they may not do what they asked, and
// records the refusal. Refusals go to the log only: a stranger pressing
// buttons must not be able to flood the audit channel.
func (b *Bot) refuse(ctx context.Context, responseURL, user, channel, what string, targets []string, why string) {
	b.log.Info("audit", slog.String("event", AuditRefuse), slog.String("actor", user), slog.String("channel", channel),
		slog.String("asked", what), slog.Any("targets", targets), slog.String("why", why))
	b.metrics.command("refused")
	b.tell(ctx, responseURL, ":no_entry: "+why)
}
