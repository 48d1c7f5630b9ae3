package request

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// Records is where a Store keeps its records: in this process (Memory) or
// in the state store's PostgreSQL (*pg.Store). Times are the records'
// own clock's. Every method fails only when the database does.
type Records interface {
	// AddRecord stores r as open, created now, expiring ttl later and due
	// deadline after (0: never), unless an open record has r.Key: then it
	// returns that one and false.
	AddRecord(ctx context.Context, r pg.Record, ttl, deadline time.Duration) (pg.Record, bool, error)
	// OpenRecord returns the open record with key (false: none).
	OpenRecord(ctx context.Context, key string) (pg.Record, bool, error)
	// Record returns record id and the clock's time now; pg.ErrNotFound.
	Record(ctx context.Context, id int64) (pg.Record, time.Time, error)
	// UpdateRecord writes r if the stored one is still at r.Version and,
	// when r.Before is set, the clock is still before it at the write.
	UpdateRecord(ctx context.Context, r pg.Record) (bool, error)
	// DueRecords returns the open records past Expires and those past
	// Deadline, with the clock's time now.
	DueRecords(ctx context.Context) ([]pg.Record, time.Time, error)
	// OpenRecords returns every open record.
	OpenRecords(ctx context.Context) ([]pg.Record, error)
	// RecordsWith returns the closed records with member among Members.
	RecordsWith(ctx context.Context, member string) ([]pg.Record, error)
	// PruneRecords forgets records closed longer than age ago.
	PruneRecords(ctx context.Context, age time.Duration) error
	// CountRecords counts the records whose key begins with prefix made in
	// the last age.
	CountRecords(ctx context.Context, prefix string, age time.Duration) (int, error)
	// KeyExists reports whether any record, open or closed, has key.
	KeyExists(ctx context.Context, key string) (bool, error)
}

// Store keeps requests. Its methods are safe for concurrent use, in one
// process or across processes sharing the records. Each call it makes to
// its records ends within CallTimeout.
type Store struct {
	recs Records
	show time.Duration // a closed request's card must show it within this
}

// ShowDue is how long a closed request's card may take to show how it
// ended before the sweep (of any process) shows it again: the process
// that queued the edit may have stopped with it in its outbox.
const ShowDue = 30 * time.Second

// NewStore keeps requests in recs.
func NewStore(recs Records) *Store {
	return &Store{recs: bounded{recs: recs, d: CallTimeout}, show: ShowDue}
}

// ShowWithin sets how long a closed request's card may take to show it
// (ShowDue by default), and returns s.
func (s *Store) ShowWithin(d time.Duration) *Store {
	s.show = d
	return s
}

// ErrUnknown is the error for a request the store does not have: never
// made, pruned, or made by a process that kept it in its own memory.
var ErrUnknown = errors.New("unknown request")

// keepDecided is how long a decided request is remembered: clicks on its
// card answer "already decided", and alerts name it as what ended a query.
const keepDecided = 24 * time.Hour

// doc is a request as stored: the columns hold its ID, state and times.
type doc struct {
	Request
	BackendDuration time.Duration // pg.Backend does not serialise its duration
}

func encode(r Request) (pg.Record, error) {
	raw, err := json.Marshal(doc{Request: r, BackendDuration: r.Backend.Duration})
	if err != nil {
		return pg.Record{}, err
	}
	id, _ := parseID(r.ID)
	return pg.Record{ID: id, Key: r.Key(), State: string(r.State), Open: r.State.Open(), Version: r.Version,
		Expires: r.Expires, Deadline: r.Deadline, Decided: r.Decided, Members: r.memberKeys(), Doc: raw}, nil
}

func decode(rec pg.Record) (Request, error) {
	var d doc
	if err := json.Unmarshal(rec.Doc, &d); err != nil {
		return Request{}, fmt.Errorf("stored request %d: %w", rec.ID, err)
	}
	r := d.Request
	r.Backend.Duration = d.BackendDuration
	r.ID, r.Version, r.State = "R"+strconv.FormatInt(rec.ID, 10), rec.Version, State(rec.State)
	r.Requested, r.Expires, r.Deadline, r.Decided = rec.Created, rec.Expires, rec.Deadline, rec.Decided
	return r, nil
}

func parseID(id string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "R"), 10, 64)
	return n, err == nil && strings.HasPrefix(id, "R") && n > 0
}

// Add stores r as a new pending request that expires ttl from now and
// whose card is due cardDue from now (the store's clock), and returns it
// with its ID. When an open request has the same Key, it returns that one
// and false. An add whose reply was lost is recognised by reading its key
// back: it is reported as made.
func (s *Store) Add(ctx context.Context, r Request, ttl, cardDue time.Duration) (Request, bool, error) {
	_ = s.recs.PruneRecords(ctx, keepDecided) // best effort
	r.State, r.ID, r.Version = Pending, "", 0
	r.Nonce = nonce()
	rec, err := encode(r)
	if err != nil {
		return r, false, err
	}
	got, created, err := s.recs.AddRecord(ctx, rec, ttl, cardDue)
	if err != nil {
		back, ok, rerr := s.recs.OpenRecord(ctx, rec.Key)
		if rerr != nil || !ok {
			return r, false, err
		}
		got, created = back, false
	}
	out, err := decode(got)
	if err != nil {
		return out, false, err
	}
	return out, created || out.Nonce == r.Nonce, nil
}

func nonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Get returns request id; ErrUnknown when there is none.
func (s *Store) Get(ctx context.Context, id string) (Request, error) {
	r, _, err := s.read(ctx, id)
	return r, err
}

func (s *Store) read(ctx context.Context, id string) (Request, time.Time, error) {
	n, ok := parseID(id)
	if !ok {
		return Request{}, time.Time{}, fmt.Errorf("%w %q", ErrUnknown, id)
	}
	rec, now, err := s.recs.Record(ctx, n)
	if errors.Is(err, pg.ErrNotFound) {
		return Request{}, now, fmt.Errorf("%w %s", ErrUnknown, id)
	}
	if err != nil {
		return Request{}, now, err
	}
	r, err := decode(rec)
	return r, now, err
}

// maxConflicts bounds how often one step is retried on a newer version:
// each retry means another step landed first.
const maxConflicts = 20

// Apply applies e to request id as one atomic step on its latest version
// and the store's clock now (Apply). It returns the request as it is after
// the step; when e does not apply, the request as it is and the reason
// (ErrDecided, ErrExpired, …). The step is judged on the record and the
// clock as read, and written only if neither has moved past what allowed it
// (a step that comes too late is judged again, and refused). A write whose
// reply was lost is recognised by reading the record back.
func (s *Store) Apply(ctx context.Context, id string, e Event) (Request, error) {
	for range maxConflicts {
		r, now, err := s.read(ctx, id)
		if err != nil {
			return r, err
		}
		cur := r
		e.show = s.show
		until, err := Apply(&r, e, now)
		if err != nil {
			return cur, err
		}
		rec, err := encode(r)
		if err != nil {
			return cur, err
		}
		rec.Before = until
		won, err := s.recs.UpdateRecord(ctx, rec)
		if err != nil {
			switch landed, sure := s.landed(ctx, rec); {
			case landed:
				won, err = true, nil // the write committed; only its reply was lost
			case !sure:
				r.Version++
				return r, fmt.Errorf("request %s: %w: %w", id, ErrUnsure, err)
			}
		}
		if err != nil {
			return cur, err
		}
		if won {
			r.Version++
			return r, nil
		}
	}
	return Request{}, fmt.Errorf("request %s: too many concurrent changes", id)
}

// ErrUnsure is the error of a step whose write failed in a way that leaves
// it unknown whether it was recorded (its answer was lost, and reading it
// back failed or could not tell): Apply then returns the request as it is
// if it was.
var ErrUnsure = errors.New("the state store's answer was lost: it may or may not have recorded it")

// landed reports whether a write whose answer was lost committed after
// all — the record is at the next version and holds exactly what was
// written — and whether that is sure: it is not when the record cannot be
// read, or is still at the version written over (the write may still be
// on its way: a statement whose client went away may yet commit), or has
// moved on past the next.
func (s *Store) landed(ctx context.Context, rec pg.Record) (landed, sure bool) {
	got, _, err := s.recs.Record(ctx, rec.ID)
	if err != nil || got.Version != rec.Version+1 {
		return false, false
	}
	var want, have any
	same := got.State == rec.State && json.Unmarshal(rec.Doc, &want) == nil && json.Unmarshal(got.Doc, &have) == nil && reflect.DeepEqual(want, have)
	return same, true // another write took the next version: this one never can
}

// Due returns the requests the sweep must act on now by the store's clock
// (pending past expiry or with an overdue card, approved past their
// deadline), and that time.
func (s *Store) Due(ctx context.Context) ([]Request, time.Time, error) {
	recs, now, err := s.recs.DueRecords(ctx)
	return decodeAll(recs), now, err
}

// Open returns every pending request.
func (s *Store) Open(ctx context.Context) ([]Request, error) {
	recs, err := s.recs.OpenRecords(ctx)
	return decodeAll(recs), err
}

// EndedBy finds the decided request whose signal ended execution id;
// false when none did. An error says the store could not be read: not
// that none did.
func (s *Store) EndedBy(ctx context.Context, id pg.Identity) (Request, bool, error) {
	recs, err := s.recs.RecordsWith(ctx, IdentityKey(id))
	if err != nil {
		return Request{}, false, err
	}
	for _, r := range decodeAll(recs) {
		if r.Signalled(id) {
			return r, true, nil
		}
	}
	return Request{}, false, nil
}

// Made reports whether a request with key (Request.Key) was ever made
// (and not pruned): a rule acts once on one statement execution.
func (s *Store) Made(ctx context.Context, key string) (bool, error) {
	return s.recs.KeyExists(ctx, key)
}

// Fired counts the requests whose key begins with prefix (AutoPrefix) made
// in the last age, by the store's clock.
func (s *Store) Fired(ctx context.Context, prefix string, age time.Duration) (int, error) {
	return s.recs.CountRecords(ctx, prefix, age)
}

// InFlight reports whether an approved request is being carried out on
// execution id (its outcome not recorded yet). An error says the store
// could not be read: not that none is.
func (s *Store) InFlight(ctx context.Context, id pg.Identity) (bool, error) {
	recs, err := s.recs.RecordsWith(ctx, IdentityKey(id))
	if err != nil {
		return false, err
	}
	for _, r := range decodeAll(recs) {
		if r.State == Approved {
			return true, nil
		}
	}
	return false, nil
}

// decodeAll decodes records, skipping any it cannot read (of an older
// layout).
func decodeAll(recs []pg.Record) []Request {
	var out []Request
	for _, rec := range recs {
		if r, err := decode(rec); err == nil {
			out = append(out, r)
		}
	}
	return out
}
