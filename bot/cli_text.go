package bot

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// writeTable prints an aligned table, longest first, one line per backend.
func writeTable(w io.Writer, ls []pg.Listing) error {
	all := pg.Merge(ls)
	if len(all) == 0 {
		_, err := fmt.Fprintln(w, "no long-running queries")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tPID\tDURATION\tSTATE\tUSER\tDATABASE\tAPPLICATION\tWAIT\tBLOCKING\tQUERY")
	for _, b := range all {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			b.Target, b.PID, blocks.Duration(b.Duration), b.State, dash(b.User), dash(b.Database),
			dash(b.Application), waitEvent(b.WaitEventType, b.WaitEvent), blocking(b), tableQuery(b))
	}
	return tw.Flush()
}

func tableQuery(b pg.Backend) string {
	q := blocks.OneLine(b.Query, 60)
	if !b.Signallable() {
		q += "  [" + b.Protected + "]"
	}
	return q
}

// blocking marks root blockers (ending them frees the rest) and waiters.
func blocking(b pg.Backend) string {
	var parts []string
	if b.RootBlocker() {
		parts = append(parts, fmt.Sprintf("ROOT blocks %d", b.BlockingTotal))
	} else if b.Blocking > 0 {
		parts = append(parts, fmt.Sprintf("blocks %d", b.BlockingTotal))
	}
	if len(b.BlockedBy) > 0 {
		var pids []string
		for _, p := range b.BlockedBy {
			if p == 0 {
				pids = append(pids, "prepared-xact")
			} else {
				pids = append(pids, fmt.Sprint(p))
			}
		}
		parts = append(parts, "waits on "+strings.Join(pids, ","))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func waitEvent(typ, ev string) string {
	if typ == "" {
		return "-"
	}
	return typ + "/" + ev
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describe is one line about a backend, for confirmation prompts.
func describe(b pg.Backend) string {
	return fmt.Sprintf("user %s, database %s, application %s, client %s, %s for %s",
		dash(b.User), dash(b.Database), dash(b.Application), dash(b.Client), b.State, blocks.Duration(b.Duration))
}

func writeReport(w io.Writer, r pg.Report) {
	fmt.Fprintf(w, "== %s\n", r.Target)
	if r.Err != nil {
		fmt.Fprintf(w, "  cannot connect: %v\n\n", r.Err)
		return
	}
	fmt.Fprintf(w, "  server: PostgreSQL %s\n", r.Version)
	fmt.Fprintf(w, "  role %s: superuser=%v rds_superuser=%v pg_signal_backend=%v pg_read_all_stats=%v\n",
		r.User, r.Superuser, r.RDSSuperuser, r.SignalBackend, r.ReadAllStats)
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  ! %s\n", p)
	}
	for _, s := range r.Settings {
		line := fmt.Sprintf("  %s = %s", s.Name, s.Value)
		if s.Advice != "" {
			line += "  -> " + s.Advice
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)
}
