package cluster_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgkill/pgkill/pg/cluster"
)

func TestStartStop(t *testing.T) {
	c, err := cluster.Start(cluster.Options{Settings: []string{"application_name=cluster_test"}})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN)
	if err != nil {
		c.Stop()
		t.Fatal(err)
	}
	var app string
	err = conn.QueryRow(ctx, "SHOW application_name").Scan(&app)
	conn.Close(ctx)
	if err != nil || app != "cluster_test" {
		t.Errorf("application_name = %q, %v: the settings did not reach the server", app, err)
	}
	dir := c.Dir()
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there after Stop: %v", dir, err)
	}
}

func TestFindBinNowhere(t *testing.T) {
	t.Setenv("PATH", "")
	t.Setenv(cluster.EnvSearch, "")
	_, err := cluster.FindBin()
	if !errors.Is(err, cluster.ErrNoServer) {
		t.Fatalf("err = %v, want ErrNoServer", err)
	}
	if _, err := cluster.Start(cluster.Options{}); !errors.Is(err, cluster.ErrNoServer) {
		t.Fatalf("Start: err = %v, want ErrNoServer", err)
	}
}
