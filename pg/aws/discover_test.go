package aws_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgkill/pgkill/pg"
	pgaws "github.com/pgkill/pgkill/pg/aws"
	"github.com/pgkill/pgkill/pg/aws/fakeaws"
)

func TestParseDiscovery(t *testing.T) {
	tests := []struct {
		in   string
		want string // fmt of the result
		err  string
	}{
		{in: "", want: fmt.Sprint(pgaws.Discovery{})},
		{
			in:   "region=eu-west-1,us-east-1 tag:team=payments tag:env=prod cluster=orders auth=iam user=pgkill interval=2m",
			want: fmt.Sprint(pgaws.Discovery{Regions: []string{"eu-west-1", "us-east-1"}, Tags: map[string]string{"team": "payments", "env": "prod"}, Clusters: []string{"orders"}, IAM: true, User: "pgkill", Database: "postgres", SSLMode: "require", Interval: 2 * time.Minute}),
		},
		{
			in:   "secret=arn:aws:secretsmanager:eu-west-1:1:secret:x database=app sslmode=verify-full",
			want: fmt.Sprint(pgaws.Discovery{Secret: "arn:aws:secretsmanager:eu-west-1:1:secret:x", Database: "app", SSLMode: "verify-full", Interval: time.Minute}),
		},
		{in: "region=eu-west-1", err: "say how to log in"},
		{in: "auth=iam", err: "needs user=NAME"},
		{in: "auth=iam user=u secret=x", err: "choose one"},
		{in: "auth=password user=u", err: "the only value is iam"},
		{in: "auth=iam user=u interval=1s", err: "at least 10s"},
		{in: "auth=iam user=u sslmode=yes", err: "not a libpq sslmode"},
		{in: "auth=iam user=u regions=x", err: `unknown setting "regions"`},
		{in: "auth=iam user=u tag:", err: "is not key=value"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			d, err := pgaws.ParseDiscovery(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(d); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// fleetOf describes specs as name/role/origin lines.
func fleetOf(specs []pg.TargetSpec) string {
	var b strings.Builder
	for _, s := range specs {
		auth := ""
		if s.Auth != nil {
			auth = s.Auth.String()
		}
		fmt.Fprintf(&b, "%s role=%q origin=%q dsn=%s auth=%q\n", s.Name, s.Role, s.Origin, s.DSN, auth)
	}
	return b.String()
}

func host(id, region string) string { return id + ".c1abc.eu-west-1.rds.amazonaws.com" }

// seed makes an Aurora cluster (writer + reader), a plain instance, its read
// replica, a MySQL instance, one being created (no endpoint) and one without
// the team tag, in eu-west-1; and one instance in us-east-1.
func seed(f *fakeaws.Server) {
	pay := map[string]string{"team": "payments"}
	f.AddCluster("eu-west-1", fakeaws.Cluster{ID: "orders", Engine: "aurora-postgresql", Writer: "orders-1"})
	for _, in := range []fakeaws.Instance{
		{ID: "orders-1", Engine: "aurora-postgresql", Cluster: "orders", Tags: pay},
		{ID: "orders-2", Engine: "aurora-postgresql", Cluster: "orders", Tags: pay},
		{ID: "ledger", Engine: "postgres", Tags: map[string]string{"team": "payments", "env": "prod"}},
		{ID: "ledger-replica", Engine: "postgres", ReplicaOf: "ledger", Tags: pay},
		{ID: "shop-mysql", Engine: "mysql", Tags: pay},
		{ID: "ledger-new", Engine: "postgres", Status: "creating", Tags: pay},
		{ID: "search", Engine: "postgres", Tags: map[string]string{"team": "search"}},
	} {
		if in.Status != "creating" {
			in.Address, in.Port = host(in.ID, "eu-west-1"), 5432
		}
		f.AddInstance("eu-west-1", in)
	}
	f.AddInstance("us-east-1", fakeaws.Instance{ID: "billing", Engine: "postgres", Address: "billing.x.us-east-1.rds.amazonaws.com", Port: 5433, Tags: pay})
}

func TestDiscover(t *testing.T) {
	f := fakeaws.New(t)
	seed(f)
	f.SetPageSize(2) // several pages: the SDK must follow Marker
	a := newAWS(t, f, "eu-west-1")
	d, err := pgaws.ParseDiscovery("region=eu-west-1,us-east-1 tag:team=payments auth=iam user=pgkill")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Discover(ctx(t), d)
	if err != nil {
		t.Fatal(err)
	}
	want := `orders-1 role="writer" origin="Aurora cluster orders in eu-west-1" dsn=postgres://pgkill@orders-1.c1abc.eu-west-1.rds.amazonaws.com:5432/postgres?sslmode=require auth="IAM token for user pgkill at orders-1.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)"
orders-2 role="reader" origin="Aurora cluster orders in eu-west-1" dsn=postgres://pgkill@orders-2.c1abc.eu-west-1.rds.amazonaws.com:5432/postgres?sslmode=require auth="IAM token for user pgkill at orders-2.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)"
ledger role="" origin="RDS instance in eu-west-1" dsn=postgres://pgkill@ledger.c1abc.eu-west-1.rds.amazonaws.com:5432/postgres?sslmode=require auth="IAM token for user pgkill at ledger.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)"
ledger-replica role="replica" origin="RDS instance in eu-west-1" dsn=postgres://pgkill@ledger-replica.c1abc.eu-west-1.rds.amazonaws.com:5432/postgres?sslmode=require auth="IAM token for user pgkill at ledger-replica.c1abc.eu-west-1.rds.amazonaws.com:5432 (eu-west-1)"
billing role="" origin="RDS instance in us-east-1" dsn=postgres://pgkill@billing.x.us-east-1.rds.amazonaws.com:5433/postgres?sslmode=require auth="IAM token for user pgkill at billing.x.us-east-1.rds.amazonaws.com:5433 (us-east-1)"
`
	if got := fleetOf(specs); got != want {
		t.Errorf("discovered:\n%s\nwant:\n%s", got, want)
	}
	// eu-west-1 holds 6 PostgreSQL instances (the fake filters MySQL out by
	// the engine filter): 3 pages of 2.
	calls := map[string]int{}
	for _, c := range f.Calls() {
		if !c.Retry {
			calls[c.Region+" "+c.Action]++
		}
	}
	wantCalls := map[string]int{"eu-west-1 DescribeDBInstances": 3, "eu-west-1 DescribeDBClusters": 1, "us-east-1 DescribeDBInstances": 1}
	if fmt.Sprint(calls) != fmt.Sprint(wantCalls) {
		t.Errorf("calls %v, want %v", calls, wantCalls)
	}
}

func TestDiscoverClusterAndSecret(t *testing.T) {
	f := fakeaws.New(t)
	seed(f)
	a := newAWS(t, f, "eu-west-1")
	d, err := pgaws.ParseDiscovery("cluster=orders secret=prod/pgkill")
	if err != nil {
		t.Fatal(err)
	}
	specs, err := a.Discover(ctx(t), d)
	if err != nil {
		t.Fatal(err)
	}
	if got := fleetOf(specs); !strings.Contains(got, `orders-1 role="writer"`) || !strings.Contains(got, `orders-2 role="reader"`) ||
		len(specs) != 2 || !strings.Contains(got, "postgres://orders-1.c1abc.eu-west-1.rds.amazonaws.com:5432/postgres?sslmode=require auth=\"Secrets Manager secret prod/pgkill\"") {
		t.Errorf("discovered:\n%s", got)
	}
	if len(specs) == 2 && specs[0].Auth != specs[1].Auth {
		t.Error("two targets of one secret do not share its login: each would read it")
	}
}

func TestRefresher(t *testing.T) {
	f := fakeaws.New(t)
	seed(f)
	a := newAWS(t, f, "eu-west-1")
	d, err := pgaws.ParseDiscovery("tag:team=payments auth=iam user=pgkill")
	if err != nil {
		t.Fatal(err)
	}
	static := []pg.TargetSpec{{Name: "selfhosted", DSN: "postgres://pgkill@10.0.0.5:5432/postgres"}}
	fleet, err := pg.NewFleet(static, pg.Options{}) // lazily connecting: nothing here dials
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	var logs bytes.Buffer
	r := pgaws.NewRefresher(a, d, static, fleet, slog.New(slog.NewTextHandler(&logs, nil)))

	step := func(name string, want pg.FleetChange, wantNames ...string) {
		t.Helper()
		ch, err := r.Refresh(ctx(t))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fmt.Sprint(ch) != fmt.Sprint(want) {
			t.Errorf("%s: change %v, want %v", name, ch, want)
		}
		if got := fleet.Names(); !slices.Equal(got, wantNames) {
			t.Errorf("%s: fleet %v, want %v", name, got, wantNames)
		}
		if st := r.Status(); st.Err != nil || st.Failures != 0 || st.Discovered != len(wantNames)-1 || st.LastSuccess.IsZero() {
			t.Errorf("%s: status %+v", name, st)
		}
	}
	step("first", pg.FleetChange{Added: []string{"orders-1", "orders-2", "ledger", "ledger-replica"}},
		"selfhosted", "orders-1", "orders-2", "ledger", "ledger-replica")
	step("unchanged", pg.FleetChange{}, "selfhosted", "orders-1", "orders-2", "ledger", "ledger-replica")

	f.AddInstance("eu-west-1", fakeaws.Instance{ID: "ledger-2", Engine: "postgres", Address: host("ledger-2", ""), Port: 5432, Tags: map[string]string{"team": "payments"}})
	f.DeleteInstance("eu-west-1", "ledger-replica")
	step("added and deleted", pg.FleetChange{Added: []string{"ledger-2"}, Removed: []string{"ledger-replica"}},
		"selfhosted", "orders-1", "orders-2", "ledger", "ledger-2")

	f.Failover("eu-west-1", "orders", "orders-2")
	step("failover", pg.FleetChange{Relabelled: []string{"orders-1", "orders-2"}},
		"selfhosted", "orders-1", "orders-2", "ledger", "ledger-2")
	roles := map[string]string{}
	for _, s := range fleet.Specs() {
		roles[s.Name] = s.Role
	}
	if roles["orders-1"] != "reader" || roles["orders-2"] != "writer" {
		t.Errorf("roles after failover: %v", roles)
	}

	// AWS refuses: the fleet stays, and the failure is said.
	f.FailRDS(&fakeaws.APIError{Status: 403, Code: "AccessDenied", Message: "User is not authorized to perform: rds:DescribeDBInstances"})
	before := fleet.Names()
	for i := 1; i <= 2; i++ {
		if _, err := r.Refresh(ctx(t)); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
			t.Fatalf("refresh with AWS refusing: err %v", err)
		}
		if st := r.Status(); st.Failures != i || st.Err == nil || st.Discovered != 4 {
			t.Errorf("status after %d failures: %+v", i, st)
		}
	}
	if got := fleet.Names(); !slices.Equal(got, before) {
		t.Errorf("a failed refresh changed the fleet: %v, want %v", got, before)
	}
	if !strings.Contains(logs.String(), "keeping the last known fleet") {
		t.Errorf("log does not say the fleet was kept:\n%s", logs.String())
	}

	// An answer with no instance at all is not believed either.
	f.FailRDS(nil)
	for _, id := range []string{"orders-1", "orders-2", "ledger", "ledger-2"} {
		f.DeleteInstance("eu-west-1", id)
	}
	if _, err := r.Refresh(ctx(t)); err == nil || !strings.Contains(err.Error(), "found no instance where there were 4") {
		t.Errorf("empty answer: err %v", err)
	}
	if got := fleet.Names(); !slices.Equal(got, before) {
		t.Errorf("an empty answer emptied the fleet: %v", got)
	}
}

func TestRefresherNameClash(t *testing.T) {
	f := fakeaws.New(t)
	seed(f)
	a := newAWS(t, f, "eu-west-1")
	d, err := pgaws.ParseDiscovery("auth=iam user=pgkill")
	if err != nil {
		t.Fatal(err)
	}
	static := []pg.TargetSpec{{Name: "ledger", DSN: "postgres://pgkill@10.0.0.5:5432/postgres"}}
	fleet, err := pg.NewFleet(static, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	_, err = pgaws.NewRefresher(a, d, static, fleet, nil).Refresh(ctx(t))
	if err == nil || !strings.Contains(err.Error(), `"ledger" is used twice: by PGKILL_TARGETS and by the RDS instance in eu-west-1`) {
		t.Fatalf("err = %v, want a name clash", err)
	}
	if got := fleet.Names(); !slices.Equal(got, []string{"ledger"}) {
		t.Errorf("fleet %v after a clash", got)
	}
}

// Nothing found and nothing configured is an error, never an empty fleet
// that would list no query.
func TestRefresherNothingFound(t *testing.T) {
	f := fakeaws.New(t)
	f.AddInstance("eu-west-1", fakeaws.Instance{ID: "shop", Engine: "mysql", Address: "10.0.0.1", Port: 3306})
	a := newAWS(t, f, "eu-west-1")
	d, err := pgaws.ParseDiscovery("auth=iam user=pgkill")
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := pg.NewFleet(nil, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fleet.Close)
	r, err := pgaws.Start(ctx(t), "auth=iam user=pgkill", a, nil, fleet, nil)
	if err == nil || r != nil || !strings.Contains(err.Error(), "no targets") {
		t.Fatalf("Start = %v, %v; want an error saying there are no targets", r, err)
	}
	if _, err := pgaws.NewRefresher(a, d, nil, fleet, nil).Refresh(ctx(t)); err == nil {
		t.Error("Refresh accepted an empty fleet")
	}
}
