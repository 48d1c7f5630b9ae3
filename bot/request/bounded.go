package request

import (
	"context"
	"fmt"
	"time"

	"github.com/pgkill/pgkill/pg"
)

// CallTimeout bounds every call a Store makes to its records: a state store
// that stops answering (packets dropped, not refused) fails the call within
// it, and the click waiting on it is answered, rather than waiting minutes
// for TCP to give up while it holds one of the pool's connections.
const CallTimeout = 5 * time.Second

// bounded is Records with a deadline on every call.
type bounded struct {
	recs Records
	d    time.Duration
}

// do runs f under a deadline d from now (or ctx's, if sooner), saying so
// when it is that deadline that ended it.
func (b bounded) do(ctx context.Context, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	err := f(cctx)
	if err != nil && ctx.Err() == nil && cctx.Err() != nil {
		err = fmt.Errorf("no answer within %s: %w", b.d, err)
	}
	return err
}

func (b bounded) AddRecord(ctx context.Context, r pg.Record, ttl, deadline time.Duration) (got pg.Record, created bool, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		got, created, err = b.recs.AddRecord(ctx, r, ttl, deadline)
		return err
	})
	return got, created, err
}

func (b bounded) OpenRecord(ctx context.Context, key string) (got pg.Record, ok bool, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		got, ok, err = b.recs.OpenRecord(ctx, key)
		return err
	})
	return got, ok, err
}

func (b bounded) Record(ctx context.Context, id int64) (got pg.Record, now time.Time, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		got, now, err = b.recs.Record(ctx, id)
		return err
	})
	return got, now, err
}

func (b bounded) UpdateRecord(ctx context.Context, r pg.Record) (won bool, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		won, err = b.recs.UpdateRecord(ctx, r)
		return err
	})
	return won, err
}

func (b bounded) DueRecords(ctx context.Context) (rs []pg.Record, now time.Time, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		rs, now, err = b.recs.DueRecords(ctx)
		return err
	})
	return rs, now, err
}

func (b bounded) OpenRecords(ctx context.Context) (rs []pg.Record, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		rs, err = b.recs.OpenRecords(ctx)
		return err
	})
	return rs, err
}

func (b bounded) RecordsWith(ctx context.Context, member string) (rs []pg.Record, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		rs, err = b.recs.RecordsWith(ctx, member)
		return err
	})
	return rs, err
}

func (b bounded) PruneRecords(ctx context.Context, age time.Duration) error {
	return b.do(ctx, func(ctx context.Context) error { return b.recs.PruneRecords(ctx, age) })
}

func (b bounded) CountRecords(ctx context.Context, prefix string, age time.Duration) (n int, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		n, err = b.recs.CountRecords(ctx, prefix, age)
		return err
	})
	return n, err
}

func (b bounded) KeyExists(ctx context.Context, key string) (ok bool, err error) {
	err = b.do(ctx, func(ctx context.Context) (err error) {
		ok, err = b.recs.KeyExists(ctx, key)
		return err
	})
	return ok, err
}
