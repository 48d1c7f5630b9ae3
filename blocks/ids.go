package blocks

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// Action IDs: every button has its own, so the bot routes on it alone.
const (
	ActionCancel           = "pgkill_cancel"    // value: Signal
	ActionTerminate        = "pgkill_terminate" // value: Signal
	ActionRequestTerminate = "pgkill_request_terminate"
	ActionApprove          = "pgkill_approve"  // value: request ID
	ActionDeny             = "pgkill_deny"     // value: request ID
	ActionWithdraw         = "pgkill_withdraw" // value: request ID
	ActionRefresh          = "pgkill_refresh"  // value: the /pgkill arguments
	ActionStop             = "pgkill_stop"     // value: request ID (a rule's countdown)
)

// Signal is what a Cancel or Terminate button carries: the action and the
// backend's full identity, so the request is about exactly that execution.
type Signal struct {
	Action pg.Action
	pg.Identity
}

const valueVersion = "v1"

// EncodeSignal writes s as a button value (well under Slack's 2000
// characters: target names are at most a few dozen).
func EncodeSignal(s Signal) string {
	return strings.Join([]string{
		valueVersion, string(s.Action), s.Target, strconv.FormatInt(int64(s.PID), 10),
		s.BackendStart.UTC().Format(time.RFC3339Nano), s.QueryStart.UTC().Format(time.RFC3339Nano),
		s.ServerStart.UTC().Format(time.RFC3339Nano),
	}, "|")
}

var errBadValue = errors.New("not a pgkill button value")

// DecodeSignal reads a button value written by EncodeSignal. Timestamps keep
// their microseconds: the identity check compares them exactly.
func DecodeSignal(v string) (Signal, error) {
	parts := strings.Split(v, "|")
	if len(parts) != 7 || parts[0] != valueVersion {
		return Signal{}, errBadValue
	}
	var s Signal
	var err error
	if s.Action, err = pg.ParseAction(parts[1]); err != nil {
		return Signal{}, fmt.Errorf("%w: %v", errBadValue, err)
	}
	s.Target = parts[2]
	if s.Target == "" {
		return Signal{}, fmt.Errorf("%w: no target", errBadValue)
	}
	pid, err := strconv.ParseInt(parts[3], 10, 32)
	if err != nil || pid <= 0 {
		return Signal{}, fmt.Errorf("%w: bad pid", errBadValue)
	}
	s.PID = int32(pid)
	for i, dst := range []*time.Time{&s.BackendStart, &s.QueryStart, &s.ServerStart} {
		if *dst, err = time.Parse(time.RFC3339Nano, parts[4+i]); err != nil {
			return Signal{}, fmt.Errorf("%w: bad timestamp", errBadValue)
		}
	}
	return s, nil
}

// Bulk action IDs: Cancel all / Terminate all on a listing (value:
// EncodeBulk), and the next step on a bulk request's outcome (value: the
// request ID).
const (
	ActionBulkCancel    = "pgkill_bulk_cancel"
	ActionBulkTerminate = "pgkill_bulk_terminate"
	ActionBulkNext      = "pgkill_bulk_next"
)

const bulkVersion = "b1"

// Bulk is what a Cancel all / Terminate all button carries: the action and
// the set of backends the listing matched, stored by the bot under SetID.
type Bulk struct {
	Action pg.Action
	SetID  string
}

// EncodeBulk writes b as a button value.
func EncodeBulk(b Bulk) string { return bulkVersion + "|" + string(b.Action) + "|" + b.SetID }

// DecodeBulk reads a value written by EncodeBulk.
func DecodeBulk(v string) (Bulk, error) {
	parts := strings.Split(v, "|")
	if len(parts) != 3 || parts[0] != bulkVersion || parts[2] == "" {
		return Bulk{}, errBadValue
	}
	a, err := pg.ParseAction(parts[1])
	if err != nil {
		return Bulk{}, fmt.Errorf("%w: %v", errBadValue, err)
	}
	return Bulk{Action: a, SetID: parts[2]}, nil
}
