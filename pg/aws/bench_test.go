package aws_test

import (
	"context"
	"testing"

	"github.com/pgkill/pgkill/pg"
	"github.com/pgkill/pgkill/pg/aws/fakeaws"
)

// The cost IAM adds to every new connection: minting one token (local
// SigV4, no AWS call).
func BenchmarkIAMLogin(b *testing.B) {
	f := fakeaws.New(b)
	a := newAWS(b, f, "eu-west-1")
	spec, err := a.Resolve(pg.TargetSpec{Name: "prod", DSN: "postgres://pgkill@db1.abc.eu-west-1.rds.amazonaws.com:5432/postgres?pgkill_auth=iam"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spec.Auth.Login(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// One discovery of 300 instances in 3 pages plus their clusters, through
// the SDK against the fake over loopback HTTP.
func BenchmarkDiscover300(b *testing.B) {
	f := fakeaws.New(b)
	f.AddCluster("eu-west-1", fakeaws.Cluster{ID: "c", Engine: "aurora-postgresql", Writer: "i-0"})
	for i := range 300 {
		in := fakeaws.Instance{ID: "i-" + itoa(i), Engine: "postgres", Address: "h" + itoa(i), Port: 5432}
		if i < 3 {
			in.Engine, in.Cluster = "aurora-postgresql", "c"
		}
		f.AddInstance("eu-west-1", in)
	}
	a := newAWS(b, f, "eu-west-1")
	d := mustDiscovery(b, "auth=iam user=pgkill")
	ctx := context.Background()
	for b.Loop() {
		specs, err := a.Discover(ctx, d)
		if err != nil || len(specs) != 300 {
			b.Fatal(len(specs), err)
		}
	}
}
