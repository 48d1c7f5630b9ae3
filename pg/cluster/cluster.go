// Package cluster starts a throwaway PostgreSQL server: initdb and pg_ctl on
// a temporary directory and a free loopback port, as the postgres OS user
// when running as root (initdb refuses root). The test helper pg/pgtest and
// `pgkill demo` share it.
package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Options tune a cluster; the zero value is a trusting server with the
// settings a disposable cluster wants (no fsync).
type Options struct {
	// Prepare runs on the data directory after initdb, before the server
	// starts (e.g. to edit pg_hba.conf). Files it writes keep their owner.
	Prepare func(dataDir string) error
	// Settings are extra -c name=value server settings.
	Settings []string
}

// Cluster is a running throwaway server.
type Cluster struct {
	// DSN is the superuser's (postgres, trust authentication) over TCP.
	DSN  string
	Port int

	bin, dir, data string
	cred           *syscall.Credential
}

// Start finds the server binaries (FindBin), creates a cluster in a new
// temporary directory and starts it. On any error nothing is left behind.
// Stop removes it.
func Start(opts Options) (*Cluster, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgkill-cluster-*")
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir, data: filepath.Join(dir, "data")}
	if err := c.start(opts); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(opts Options) error {
	if os.Geteuid() == 0 {
		pgUser, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root needs the postgres OS user: %w", err)
		}
		uid, _ := strconv.Atoi(pgUser.Uid)
		gid, _ := strconv.Atoi(pgUser.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return err
		}
	}
	if err := c.run("initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"); err != nil {
		return err
	}
	if opts.Prepare != nil {
		if err := opts.Prepare(c.data); err != nil {
			return err
		}
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	settings := append([]string{
		"listen_addresses=127.0.0.1",
		"unix_socket_directories=" + c.dir,
		"max_connections=400",
		"max_prepared_transactions=10",
		"fsync=off",
		"synchronous_commit=off",
		"full_page_writes=off",
		"shared_buffers=32MB",
	}, opts.Settings...)
	args := []string{"-p " + strconv.Itoa(port)}
	for _, s := range settings {
		args = append(args, "-c "+s)
	}
	if err := c.run("pg_ctl", "start", "-w", "-t", "60", "-D", c.data, "-l", filepath.Join(c.dir, "log"), "-o", strings.Join(args, " ")); err != nil {
		return err
	}
	c.Port = port
	c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return nil
}

// Stop stops the server at once (its data is thrown away) and removes the
// directory.
func (c *Cluster) Stop() error {
	err := c.run("pg_ctl", "stop", "-D", c.data, "-m", "immediate", "-w")
	return errors.Join(err, os.RemoveAll(c.dir))
}

func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Dir is the temporary directory holding the data, socket and log.
func (c *Cluster) Dir() string { return c.dir }
