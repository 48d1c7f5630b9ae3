// Package config reads every setting of pgkill from the environment and
// checks it; the command line and the Slack bot read the same settings.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/pgkill/pgkill/bot/policy"
	"github.com/pgkill/pgkill/bot/redact"
	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/match"
)

// Config is every setting, read from the environment (docs/configuration.md
// lists each variable and its default).
type Config struct {
	Targets       string        `envconfig:"PGKILL_TARGETS"`
	DatabaseURL   string        `envconfig:"DATABASE_URL"`
	MinDuration   time.Duration `envconfig:"PGKILL_MIN_DURATION" default:"1m"`
	VerifyTimeout time.Duration `envconfig:"PGKILL_VERIFY_TIMEOUT" default:"10s"`
	// Session rules (pg/match): PGKILL_PROTECT takes user=/app= rules; the
	// two shorthands take bare user or application patterns.
	Protect        string        `envconfig:"PGKILL_PROTECT" default:"user=rdsadmin"`
	ProtectedUsers string        `envconfig:"PGKILL_PROTECTED_USERS"`
	ProtectedApps  string        `envconfig:"PGKILL_PROTECTED_APPS"`
	ConnectTimeout time.Duration `envconfig:"PGKILL_CONNECT_TIMEOUT" default:"5s"`
	// RDSDiscover is read by pg/aws (ParseDiscovery, Start).
	RDSDiscover string `envconfig:"PGKILL_RDS_DISCOVER"`

	AppToken     string        `envconfig:"SLACK_APP_TOKEN"`
	BotToken     string        `envconfig:"SLACK_BOT_TOKEN"`
	APIURL       string        `envconfig:"SLACK_API_URL" default:"https://slack.com/api/"`
	Approvers    IDList        `envconfig:"PGKILL_APPROVERS"`
	Requesters   IDList        `envconfig:"PGKILL_REQUESTERS"`
	Viewers      IDList        `envconfig:"PGKILL_VIEWERS"`
	Channels     IDList        `envconfig:"PGKILL_CHANNELS"`
	Approvals    string        `envconfig:"PGKILL_APPROVALS"`
	PolicyFile   string        `envconfig:"PGKILL_POLICY_FILE"`
	Reason       string        `envconfig:"PGKILL_REASON" default:"optional"`
	BulkMax      int           `envconfig:"PGKILL_BULK_MAX" default:"1000"`
	SelfApproval bool          `envconfig:"PGKILL_SELF_APPROVAL" default:"false"`
	ApprovalTTL  time.Duration `envconfig:"PGKILL_APPROVAL_TTL" default:"15m"`
	Command      string        `envconfig:"PGKILL_COMMAND" default:"/pgkill"`
	AuditChannel string        `envconfig:"PGKILL_AUDIT_CHANNEL"`
	StateDSN     string        `envconfig:"PGKILL_STATE_DSN"`
	// Redact is redact.ParseMode's input: literals (default) or none.
	Redact string `envconfig:"PGKILL_REDACT" default:"literals"`

	AlertChannel     string        `envconfig:"PGKILL_ALERT_CHANNEL"`
	AlertAfter       time.Duration `envconfig:"PGKILL_ALERT_AFTER" default:"5m"`
	IdleTxAlertAfter time.Duration `envconfig:"PGKILL_IDLE_TX_ALERT_AFTER" default:"10m"`
	PollInterval     time.Duration `envconfig:"PGKILL_POLL_INTERVAL" default:"15s"`
	AlertMaxPerPoll  int           `envconfig:"PGKILL_ALERT_MAX_PER_POLL" default:"5"`
	AlertIgnore      string        `envconfig:"PGKILL_ALERT_IGNORE"`
	AlertIgnoreApps  string        `envconfig:"PGKILL_ALERT_IGNORE_APPS"`
	AlertIgnoreUsers string        `envconfig:"PGKILL_ALERT_IGNORE_USERS"`
	AlertEditEvery   time.Duration `envconfig:"PGKILL_ALERT_EDIT_INTERVAL" default:"1m"`

	Replica   string `envconfig:"PGKILL_REPLICA"` // "" = the hostname and a suffix of this process's own (Load)
	Listen    string `envconfig:"PGKILL_LISTEN"`
	LogFormat string `envconfig:"PGKILL_LOG_FORMAT" default:"json"`
	LogLevel  string `envconfig:"PGKILL_LOG_LEVEL" default:"info"`
}

// TargetSpecs parses the targets (PGKILL_TARGETS, else DATABASE_URL, else
// the libpq PG* variables). Errors start with the variable's name.
func (c Config) TargetSpecs() ([]pg.TargetSpec, error) {
	return pg.ParseTargets(c.Targets, c.DatabaseURL)
}

// Policy reads who may see and act where: the defaults from PGKILL_CHANNELS,
// PGKILL_VIEWERS, PGKILL_REQUESTERS, PGKILL_APPROVERS and PGKILL_APPROVALS,
// and per-target rules from PGKILL_POLICY_FILE. Errors name the variable, or
// the file and its lines.
func (c Config) Policy() (*policy.Policy, error) {
	for _, list := range []struct {
		name  string
		ids   []string
		check func([]string) error
	}{
		{"PGKILL_APPROVERS", c.Approvers, policy.CheckPeople}, {"PGKILL_REQUESTERS", c.Requesters, policy.CheckPeople},
		{"PGKILL_VIEWERS", c.Viewers, policy.CheckPeople}, {"PGKILL_CHANNELS", c.Channels, policy.CheckChannels},
	} {
		if err := list.check(list.ids); err != nil {
			return nil, fmt.Errorf("%s: %w", list.name, err)
		}
	}
	approvals, err := policy.ParseApprovals(c.Approvals)
	if err != nil {
		return nil, fmt.Errorf("PGKILL_APPROVALS: %w", err)
	}
	defaults := policy.Rules{Channels: c.Channels, Viewers: c.Viewers, Requesters: c.Requesters,
		Approvers: c.Approvers, Approvals: approvals}
	if c.PolicyFile == "" {
		return &policy.Policy{Default: defaults}, nil
	}
	data, err := os.ReadFile(c.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("PGKILL_POLICY_FILE: %w", err)
	}
	p, err := policy.Parse(data, defaults)
	if err != nil {
		return nil, fmt.Errorf("PGKILL_POLICY_FILE %s: %w", c.PolicyFile, err)
	}
	return p, nil
}

// IDList is a comma-separated list of Slack IDs, read with match.List
// (trimmed, empty entries skipped) like every other list setting.
type IDList []string

// Decode implements envconfig.Decoder.
func (l *IDList) Decode(s string) error {
	*l = match.List(s)
	return nil
}

// rules parses the session-rule settings: one parser for all of them.
func (c Config) rules(vars ...struct{ name, value, bare string }) (match.Rules, error) {
	var out match.Rules
	for _, v := range vars {
		rs, err := match.Parse(v.value, v.bare)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// ProtectRules are the sessions never offered, signalled or alerted:
// PGKILL_PROTECT with its two shorthands.
func (c Config) ProtectRules() (match.Rules, error) {
	return c.rules(
		struct{ name, value, bare string }{"PGKILL_PROTECT", c.Protect, ""},
		struct{ name, value, bare string }{"PGKILL_PROTECTED_USERS", c.ProtectedUsers, match.User},
		struct{ name, value, bare string }{"PGKILL_PROTECTED_APPS", c.ProtectedApps, match.App},
	)
}

// AlertIgnoreRules are the sessions never alerted: PGKILL_ALERT_IGNORE
// with its two shorthands.
func (c Config) AlertIgnoreRules() (match.Rules, error) {
	return c.rules(
		struct{ name, value, bare string }{"PGKILL_ALERT_IGNORE", c.AlertIgnore, ""},
		struct{ name, value, bare string }{"PGKILL_ALERT_IGNORE_USERS", c.AlertIgnoreUsers, match.User},
		struct{ name, value, bare string }{"PGKILL_ALERT_IGNORE_APPS", c.AlertIgnoreApps, match.App},
	)
}

// PGOptions are the settings every target shares. It fails only on a
// malformed protection rule (Validate reports those first).
func (c Config) PGOptions() (pg.Options, error) {
	protect, err := c.ProtectRules()
	if err != nil {
		return pg.Options{}, err
	}
	return pg.Options{Protect: protect, ConnectTimeout: c.ConnectTimeout}, nil
}

// Validate checks what the command-line tools need besides the targets
// (TargetSpecs). It reports every problem at once (errors.Join), one line
// each, naming its variable.
func (c Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool // zero allowed (= off)
	}{
		{"PGKILL_MIN_DURATION", c.MinDuration, true},
		{"PGKILL_VERIFY_TIMEOUT", c.VerifyTimeout, false},
		{"PGKILL_CONNECT_TIMEOUT", c.ConnectTimeout, false},
		{"PGKILL_APPROVAL_TTL", c.ApprovalTTL, false},
		{"PGKILL_ALERT_AFTER", c.AlertAfter, false},
		{"PGKILL_IDLE_TX_ALERT_AFTER", c.IdleTxAlertAfter, true},
		{"PGKILL_POLL_INTERVAL", c.PollInterval, false},
		{"PGKILL_ALERT_EDIT_INTERVAL", c.AlertEditEvery, false},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			errs = append(errs, fmt.Errorf("%s must be a positive duration, not %v", d.name, d.v))
		}
	}
	if _, err := c.ProtectRules(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.AlertIgnoreRules(); err != nil {
		errs = append(errs, err)
	}
	if _, err := redact.ParseMode(c.Redact); err != nil {
		errs = append(errs, fmt.Errorf("PGKILL_REDACT %w", err))
	}
	if c.AlertMaxPerPoll < 1 {
		errs = append(errs, fmt.Errorf("PGKILL_ALERT_MAX_PER_POLL must be at least 1, not %d", c.AlertMaxPerPoll))
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("PGKILL_LISTEN must be host:port or :port (e.g. :9187), not %q", c.Listen))
		}
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("PGKILL_LOG_FORMAT must be json or text, not %q", c.LogFormat))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("PGKILL_LOG_LEVEL must be debug, info, warn or error, not %q", c.LogLevel))
	}
	return errors.Join(errs...)
}

var slackChannel = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)

// ValidateSlack checks what `serve` needs on top of Validate, and like it
// reports every problem at once. Token values never appear in the error.
func (c Config) ValidateSlack() error {
	errs := []error{c.Validate()}
	switch {
	case c.AppToken == "":
		errs = append(errs, errors.New("SLACK_APP_TOKEN is not set: an app-level token (xapp-…) with connections:write"))
	case !strings.HasPrefix(c.AppToken, "xapp-"):
		errs = append(errs, errors.New("SLACK_APP_TOKEN must be an app-level token starting with xapp-"))
	}
	switch {
	case c.BotToken == "":
		errs = append(errs, errors.New("SLACK_BOT_TOKEN is not set: the bot token (xoxb-…)"))
	case !strings.HasPrefix(c.BotToken, "xoxb-"):
		errs = append(errs, errors.New("SLACK_BOT_TOKEN must be a bot token starting with xoxb-"))
	}
	if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasSuffix(c.APIURL, "/") {
		errs = append(errs, fmt.Errorf("SLACK_API_URL must be an http(s) URL ending in /, not %q", c.APIURL))
	}
	if len(c.Approvers) == 0 {
		errs = append(errs, errors.New("PGKILL_APPROVERS is not set: list the Slack user IDs (U…) or user-group IDs (S…) who may approve"))
	}
	if _, err := c.Policy(); err != nil {
		errs = append(errs, err)
	}
	if _, err := policy.ParseReason(c.Reason); err != nil {
		errs = append(errs, fmt.Errorf("PGKILL_REASON: %w", err))
	}
	if c.StateDSN != "" {
		if err := pg.CheckDSN(c.StateDSN); err != nil {
			errs = append(errs, fmt.Errorf("PGKILL_STATE_DSN: %w", err))
		}
	}
	if !strings.HasPrefix(c.Command, "/") || strings.ContainsAny(c.Command, " \t") {
		errs = append(errs, fmt.Errorf("PGKILL_COMMAND must look like /pgkill, not %q", c.Command))
	}
	for _, ch := range []struct{ name, id string }{{"PGKILL_AUDIT_CHANNEL", c.AuditChannel}, {"PGKILL_ALERT_CHANNEL", c.AlertChannel}} {
		if ch.id != "" && !slackChannel.MatchString(ch.id) {
			errs = append(errs, fmt.Errorf("%s must be a channel ID (C…), not %q", ch.name, ch.id))
		}
	}
	return errors.Join(errs...)
}

// ReplicaName is this replica's name in logs, audit records, /readyz and
// leases: PGKILL_REPLICA, else (Load sets it) the hostname with a random
// suffix, so that processes sharing a host — two units on one VM, a
// blue/green overlap, `docker run --network host` — never share one name;
// a Config made by hand without one uses the hostname.
func (c Config) ReplicaName() string {
	if c.Replica != "" {
		return c.Replica
	}
	return hostname()
}

func hostname() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "pgkill"
}

// defaultReplica is the hostname with a suffix of this process's own.
func defaultReplica() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hostname() + "-" + hex.EncodeToString(b)
}

// Timing derived from the settings, one place for each.

// QueryTimeout bounds a listing: the per-target timeouts come first.
func (c Config) QueryTimeout() time.Duration { return c.ConnectTimeout + 15*time.Second }

// ShutdownGrace bounds how long in-flight actions may run after SIGTERM:
// long enough for a signal plus its verification.
func (c Config) ShutdownGrace() time.Duration {
	return c.VerifyTimeout + c.ConnectTimeout + 10*time.Second
}

// SignalBudget bounds a signal and its verification, counted from the
// approval: an approval later than that signals nothing.
func (c Config) SignalBudget() time.Duration { return c.ShutdownGrace() }

// SignalMargin is how long after its budget an approved request is closed
// by the sweep as abandoned: the time a signal sent at the end of its budget
// needs to reach its server, and the outcome to be recorded.
func (c Config) SignalMargin() time.Duration { return c.SignalBudget() + 15*time.Second }

// SweepInterval is how often the housekeeping sweep runs: a small part of
// the approval TTL, so an expiry is at most that late.
func (c Config) SweepInterval() time.Duration {
	return min(max(c.ApprovalTTL/20, 200*time.Millisecond), 5*time.Second)
}
