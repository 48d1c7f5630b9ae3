package pg_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/pgtest"
)

func TestFleetSet(t *testing.T) {
	dsn := pgtest.DSN(t)
	other := replaceDB(dsn, "template1")
	f, err := pg.NewFleet([]pg.TargetSpec{{Name: "a", DSN: dsn}, {Name: "b", DSN: dsn, Role: "writer"}}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	a, _ := f.Target("a")
	b, _ := f.Target("b")
	if err := a.Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}

	// b fails over (reader now), a goes, c comes; a DSN change replaces d.
	ch, err := f.Set([]pg.TargetSpec{{Name: "b", DSN: dsn, Role: "reader"}, {Name: "c", DSN: dsn}})
	if err != nil {
		t.Fatal(err)
	}
	want := pg.FleetChange{Added: []string{"c"}, Removed: []string{"a"}, Relabelled: []string{"b"}}
	if fmt.Sprint(ch) != fmt.Sprint(want) {
		t.Errorf("change = %v, want %v", ch, want)
	}
	if got := f.Names(); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("names = %v", got)
	}
	if b2, _ := f.Target("b"); b2 != b {
		t.Error("relabelled target b got a new pool")
	}
	if specs := f.Specs(); specs[0].Role != "reader" {
		t.Errorf("b's role = %q, want reader", specs[0].Role)
	}
	if err := a.Ping(ctx(t)); err == nil {
		t.Error("removed target a still answers: its pool was not closed")
	}
	if _, err := f.Target("a"); err == nil {
		t.Error("removed target a still found")
	}
	ls := f.List(ctx(t), []string{"a", "b"}, pg.Filter{})
	if ls[0].Err == nil || ls[1].Err != nil {
		t.Errorf("listing a (removed) err %v, b err %v", ls[0].Err, ls[1].Err)
	}

	ch, err = f.Set([]pg.TargetSpec{{Name: "b", DSN: other, Role: "reader"}, {Name: "c", DSN: dsn}})
	if err != nil || !slices.Equal(ch.Replaced, []string{"b"}) || len(ch.Added)+len(ch.Removed)+len(ch.Relabelled) != 0 {
		t.Errorf("change = %v, %v; want b replaced", ch, err)
	}
	if err := b.Ping(ctx(t)); err == nil {
		t.Error("replaced target's old pool still open")
	}

	ch, err = f.Set(f.Specs())
	if err != nil || !ch.Empty() || ch.String() != "no change" {
		t.Errorf("same specs: change %v, %v", ch, err)
	}
}

func TestFleetSetRefusesAndKeeps(t *testing.T) {
	dsn := pgtest.DSN(t)
	f, err := pg.NewFleet([]pg.TargetSpec{{Name: "a", DSN: dsn}}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	for _, specs := range [][]pg.TargetSpec{
		{{Name: "x", DSN: dsn}, {Name: "x", DSN: dsn}},
		{{Name: "x", DSN: dsn}, {Name: "y", DSN: "postgres://h:notaport/db"}},
	} {
		if _, err := f.Set(specs); err == nil {
			t.Errorf("Set(%v) accepted", specs)
		}
		if got := f.Names(); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("after a refused Set the fleet is %v, want [a]", got)
		}
	}
	if err := f.Ping(ctx(t), "a"); err != nil {
		t.Errorf("kept target: %v", err)
	}
}

// Set runs while listings, pings and signals run on the same targets: the
// race detector checks the locking; every operation either works or says
// its target is gone.
func TestFleetSetConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	f, err := pg.NewFleet([]pg.TargetSpec{{Name: "a", DSN: dsn}, {Name: "b", DSN: dsn}}, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	c, cancel := context.WithCancel(ctx(t))
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.Err() == nil {
				for _, l := range f.List(c, nil, pg.Filter{}) {
					if l.Err != nil && c.Err() == nil && !gone(l.Err) {
						errs <- l.Err
					}
				}
				_, err := f.Signal(c, pg.Cancel, pg.Identity{Target: "b", PID: 1})
				if err != nil && c.Err() == nil && !gone(err) {
					errs <- err
				}
			}
		}()
	}
	for i := range 20 {
		specs := []pg.TargetSpec{{Name: "a", DSN: dsn}}
		if i%2 == 0 {
			specs = append(specs, pg.TargetSpec{Name: "b", DSN: dsn})
		}
		if _, err := f.Set(specs); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// gone says whether err is a target's removal seen by an operation racing
// with it: unknown by name, or its connections closed under it.
func gone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unknown target") || strings.Contains(s, "it left the fleet")
}
