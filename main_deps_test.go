package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryCarriesNoTestScaffolding: the binary imports no test helper,
// directly or through a package it uses. `testing` registers its flags in a
// binary and drags the test helpers' fakes in with it; httptest registers a
// flag of its own.
func TestBinaryCarriesNoTestScaffolding(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"testing",
		"testing/",
		"net/http/httptest",
		"github.com/chromedp/",
		"github.com/pgkill/pgkill/bot/fakeslack",
		"github.com/pgkill/pgkill/pg/pgtest",
		"github.com/pgkill/pgkill/pg/aws/fakeaws",
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps named only %q", deps)
	}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f) {
				t.Errorf("the binary imports %s", dep)
			}
		}
	}
}
