package cli

import (
	"flag"
	"strings"
	"testing"
)

// Every flag a command takes is in its synopsis (-yes as its short -y), so
// `pgkill help` shows them all.
func TestSynopsisNamesEveryFlag(t *testing.T) {
	for _, c := range commands {
		if c.flags == nil {
			continue
		}
		c.flags().VisitAll(func(f *flag.Flag) {
			if f.Name == "yes" { // its short -y is there
				return
			}
			if !strings.Contains(c.synopsis, "-"+f.Name) {
				t.Errorf("%s: the synopsis lacks -%s: %s", c.name, f.Name, c.synopsis)
			}
		})
	}
}
