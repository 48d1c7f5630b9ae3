package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoServer: no initdb was found. Its message says how to install one.
var ErrNoServer = errors.New("no PostgreSQL server binaries (initdb, pg_ctl) found: install them with `apt-get install postgresql` or `brew install postgresql`")

// EnvSearch overrides where FindBin looks after PATH: a list of globs
// separated by the OS list separator. Set and empty, FindBin looks on PATH
// only (tests of a machine without PostgreSQL use that).
const EnvSearch = "PGKILL_PG_BIN_SEARCH"

// defaultSearch is where packages put the server binaries off PATH: Debian
// (/usr/lib/postgresql/N/bin) and Homebrew's versioned kegs.
var defaultSearch = []string{
	"/usr/lib/postgresql/*/bin",
	"/opt/homebrew/opt/postgresql*/bin",
	"/usr/local/opt/postgresql*/bin",
}

// FindBin returns the directory of initdb: on PATH, else the newest of the
// search directories (EnvSearch). The error wraps ErrNoServer.
func FindBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	search := defaultSearch
	if v, ok := os.LookupEnv(EnvSearch); ok {
		search = filepath.SplitList(v)
	}
	var dirs []string
	for _, g := range search {
		found, _ := filepath.Glob(filepath.Join(g, "initdb"))
		dirs = append(dirs, found...)
	}
	if len(dirs) == 0 {
		where := "on PATH"
		if len(search) > 0 {
			where += " and in " + strings.Join(search, ", ")
		}
		return "", fmt.Errorf("%w (looked %s)", ErrNoServer, where)
	}
	sort.SliceStable(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return filepath.Dir(dirs[0]), nil
}

// version is the major version in a path like /usr/lib/postgresql/16/bin/initdb
// or …/postgresql@16/bin/initdb; 0 when there is none.
func version(path string) int {
	base := filepath.Base(filepath.Dir(filepath.Dir(path)))
	n, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(base, "postgresql"), "@"))
	return n
}
