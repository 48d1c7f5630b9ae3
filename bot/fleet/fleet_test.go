package fleet_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pgkill/pgkill/bot/fleet"
	"github.com/pgkill/pgkill/pg"
)

// stub answers every read with one backend running query.
type stub struct {
	fleet.DB
	query string
}

func (s stub) backend() pg.Backend {
	return pg.Backend{Identity: pg.Identity{Target: "prod", PID: 7}, Query: s.query}
}
func (s stub) List(context.Context, []string, pg.Filter) []pg.Listing {
	return []pg.Listing{{Target: "prod", Backends: []pg.Backend{s.backend()}}}
}
func (s stub) Complete(_ context.Context, l pg.Listing) pg.Listing {
	if !l.Degraded {
		return l
	}
	return pg.Listing{Target: l.Target, Backends: []pg.Backend{s.backend()}}
}
func (s stub) Backend(context.Context, string, int32) (pg.Backend, error) { return s.backend(), nil }

func upper(q string) (string, string) { return strings.ToUpper(q), "fp(" + q + ")" }

func TestShown(t *testing.T) {
	db := fleet.Shown(stub{query: "select 'secret'"}, upper)
	ctx := context.Background()
	want := pg.Backend{Identity: pg.Identity{Target: "prod", PID: 7}, Query: "SELECT 'SECRET'", Fingerprint: "fp(select 'secret')"}
	listed := db.List(ctx, nil, pg.Filter{})[0].Backends[0]
	b, _ := db.Backend(ctx, "prod", 7)
	full := db.Complete(ctx, pg.Listing{Target: "prod", Degraded: true}).Backends[0]
	for name, got := range map[string]pg.Backend{"List": listed, "Backend": b, "Complete": full} {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	// A listing that was complete already comes back as it was: shown once.
	again := db.Complete(ctx, pg.Listing{Target: "prod", Backends: []pg.Backend{want}}).Backends[0]
	if !reflect.DeepEqual(again, want) {
		t.Errorf("Complete of a complete listing = %+v, want it unchanged", again)
	}
}

// Every method of DB that returns backends (and so query text) is one
// Shown wraps: a method added to DB must be added there too.
func TestShownCoversEveryBackend(t *testing.T) {
	wrapped := []string{"List", "Complete", "Backend"}
	backend := reflect.TypeFor[pg.Backend]()
	holds := func(t reflect.Type) bool {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == backend {
			return true
		}
		if t.Kind() == reflect.Struct {
			for i := range t.NumField() {
				f := t.Field(i).Type
				for f.Kind() == reflect.Slice || f.Kind() == reflect.Pointer {
					f = f.Elem()
				}
				if f == backend {
					return true
				}
			}
		}
		return false
	}
	db := reflect.TypeFor[fleet.DB]()
	for i := range db.NumMethod() {
		m := db.Method(i)
		for j := range m.Type.NumOut() {
			if holds(m.Type.Out(j)) && !slices.Contains(wrapped, m.Name) {
				t.Errorf("DB.%s returns backends, and Shown does not show their query text", m.Name)
			}
		}
	}
}
