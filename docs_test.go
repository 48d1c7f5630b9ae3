package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// docFiles are README.md and the pages under docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md pages (%v)", err)
	}
	return append([]string{"README.md"}, pages...)
}

// fence matches a fenced code block (``` or ~~~), whose text is no Markdown.
var fence = regexp.MustCompile("(?ms)^(```|~~~).*?^(```|~~~)[ \t]*$")

func readDoc(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fence.ReplaceAllString(string(data), "")
}

// headingAnchors are the anchors GitHub gives a page's headings: lower
// case, punctuation dropped, spaces as hyphens, -1, -2 … on repeats.
func headingAnchors(text string) map[string]bool {
	drop := regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`).FindAllStringSubmatch(text, -1) {
		a := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// Every relative link in README.md and docs/*.md reaches a file that exists
// and, when it names one, a heading of that file: pages move, and a link
// that lands nowhere is found here rather than by a reader.
func TestDocsLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	anchors := map[string]map[string]bool{}
	for _, f := range docFiles(t) {
		for _, m := range link.FindAllStringSubmatch(readDoc(t, f), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := f
			if path != "" {
				file = filepath.Join(filepath.Dir(f), path)
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: link %s: %v", f, target, err)
				continue
			}
			if anchor == "" {
				continue
			}
			if anchors[file] == nil {
				anchors[file] = headingAnchors(readDoc(t, file))
			}
			if !anchors[file][anchor] {
				t.Errorf("%s: link %s: %s has no heading #%s", f, target, file, anchor)
			}
		}
	}
}

// Every PGKILL_*/SLACK_* variable the code reads has a row in the
// configuration reference, with its default.
func TestDocsEveryVariable(t *testing.T) {
	read := regexp.MustCompile(`"((?:PGKILL|SLACK)_[A-Z0-9_]+)"|envconfig:"([A-Z0-9_]+)"`)
	vars := map[string]string{} // variable → a file that reads it
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (path == ".git" || path == "docs") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || path == "docs_test.go" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range read.FindAllStringSubmatch(string(data), -1) {
			vars[m[1]+m[2]] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(vars) < 10 {
		t.Fatalf("found only %d variables in the code: the pattern no longer matches how the code reads them", len(vars))
	}
	rows := map[string]bool{} // variables with a row whose default cell is filled
	for _, line := range strings.Split(readDoc(t, "docs/configuration.md"), "\n") {
		cells := strings.Split(strings.Trim(line, " |"), " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) < 3 || strings.TrimSpace(cells[1]) == "" {
			continue
		}
		for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]+)`").FindAllStringSubmatch(cells[0], -1) {
			rows[m[1]] = true
		}
	}
	var missing []string
	for v, file := range vars {
		if !rows[v] {
			missing = append(missing, v+" (read in "+file+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("docs/configuration.md has no row with a default for %s", m)
	}
}
