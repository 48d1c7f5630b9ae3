package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/pgkill/pgkill/blocks"
	"github.com/pgkill/pgkill/pg"
)

// Width is the width to fit tables to: COLUMNS when it is a number (the
// shell sets it, and a user may), else the size of out when out is a
// terminal, else 0 (a pipe or a file: never cut).
func Width(columns string, out io.Writer) int {
	if n, err := strconv.Atoi(strings.TrimSpace(columns)); err == nil && n > 0 {
		return n
	}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return w
		}
	}
	return 0
}

// column is one column of the session table.
type column struct {
	name string
	cell func(pg.Backend) string
	// droppable: the column gives way when the table is wider than the
	// terminal (fit says in which order).
	droppable bool
}

// minQuery is the least of a query a fitted table shows.
const minQuery = 16

// table is the session table: its columns, then fitted to a width.
type table struct {
	cols  []column
	rows  [][]string
	query []string // each row's query cell before any cut
	left  []string // columns dropped to fit
	width int      // what fit fits to
}

// newTable lays bs out with every column; the target column only when
// the sessions are on more than one target.
func newTable(bs []pg.Backend, wide bool) *table {
	cols := []column{
		{"TARGET", func(b pg.Backend) string { return b.Target }, true},
		{"PID", func(b pg.Backend) string { return fmt.Sprint(b.PID) }, false},
		{"DURATION", func(b pg.Backend) string { return blocks.Duration(b.Duration) }, false},
		{"STATE", func(b pg.Backend) string { return string(b.State) }, false},
		{"USER", func(b pg.Backend) string { return cell(b.User) }, true},
		{"DATABASE", func(b pg.Backend) string { return cell(b.Database) }, true},
		{"APPLICATION", func(b pg.Backend) string { return cell(b.Application) }, true},
		{"WAIT", func(b pg.Backend) string { return waitEvent(b.WaitEventType, b.WaitEvent) }, true},
		{"BLOCKING", blocking, false},
		{"QUERY", func(b pg.Backend) string { return tableQuery(b, wide) }, false},
	}
	targets := map[string]bool{}
	for _, b := range bs {
		targets[b.Target] = true
	}
	if len(targets) > 1 {
		cols[0].droppable = false // with several targets, the target says where to act
	}
	t := &table{cols: cols}
	for _, b := range bs {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = c.cell(b)
		}
		t.rows = append(t.rows, row)
		t.query = append(t.query, row[len(row)-1])
	}
	return t
}

// widths is each column's width in runes, header included.
func (t *table) widths() []int {
	w := make([]int, len(t.cols))
	for i, c := range t.cols {
		w[i] = utf8.RuneCountInString(c.name)
		for _, r := range t.rows {
			w[i] = max(w[i], utf8.RuneCountInString(r[i]))
		}
	}
	return w
}

// total is the table's width with two spaces between columns.
func total(widths []int) int {
	n := 0
	for _, w := range widths {
		n += w
	}
	return n + 2*(len(widths)-1)
}

// fit makes the table at most width columns wide, as far as it can, by
// these steps in turn, each only while it is still too wide: drop the
// target (when there is one), the application and the database; shorten
// the states; cut the query to 24 characters; drop the user; cut the query
// to minQuery; drop the wait. width 0 leaves it as it is.
func (t *table) fit(width int) {
	if width <= 0 {
		return
	}
	t.width = width
	steps := []func(){
		t.dropper("TARGET"), t.dropper("APPLICATION"), t.dropper("DATABASE"),
		func() {
			s := t.find(func(c column) bool { return c.name == "STATE" })
			for _, r := range t.rows {
				r[s] = strings.Replace(r[s], "idle in transaction", "idle in tx", 1)
			}
		},
		t.cutter(24), t.dropper("USER"), t.cutter(minQuery), t.dropper("WAIT"),
	}
	for _, step := range steps {
		if total(t.widths()) <= width {
			break
		}
		step()
	}
	// The query takes whatever room the steps left.
	q := t.find(func(c column) bool { return c.name == "QUERY" })
	w := t.widths()
	room := max(width-(total(w)-w[q]), minQuery)
	for i, r := range t.rows {
		r[q] = blocks.Truncate(t.query[i], room)
	}
}

// dropper drops the column named so, if it may be dropped.
func (t *table) dropper(name string) func() {
	return func() {
		i := t.find(func(c column) bool { return c.name == name && c.droppable })
		if i >= 0 {
			t.left = append(t.left, name)
			t.remove(i)
		}
	}
}

// cutter cuts the query column by as much as the table is too wide, to no
// less than least characters.
func (t *table) cutter(least int) func() {
	return func() {
		q := t.find(func(c column) bool { return c.name == "QUERY" })
		w := t.widths()
		keep := max(w[q]-(total(w)-t.width), least)
		for _, r := range t.rows {
			r[q] = blocks.Truncate(r[q], keep)
		}
	}
}

func (t *table) find(ok func(column) bool) int {
	for i, c := range t.cols {
		if ok(c) {
			return i
		}
	}
	return -1
}

func (t *table) remove(i int) {
	t.cols = append(t.cols[:i], t.cols[i+1:]...)
	for j, r := range t.rows {
		t.rows[j] = append(r[:i], r[i+1:]...)
	}
}

// write prints the table aligned, and which columns it left out.
func (t *table) write(w io.Writer, width int) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = c.name
	}
	fmt.Fprintln(tw, strings.Join(names, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(t.left) > 0 {
		_, err := fmt.Fprintf(w, "(%s left out to fit %d columns; -wide shows every column and the whole query)\n", strings.Join(t.left, ", "), width)
		return err
	}
	return nil
}

// writeTable prints one line per backend, fitted to width unless wide
// (which shows everything, the whole query too).
func writeTable(w io.Writer, bs []pg.Backend, wide bool, width int) error {
	t := newTable(bs, wide)
	if wide {
		width = 0
	}
	t.fit(width)
	return t.write(w, width)
}
