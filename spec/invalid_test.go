package spec

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the expected diagnostics of testdata/invalid")

// An invalid case is testdata/invalid/NAME.hcl (or a generated variant, see
// invalidVariants) with NAME.want beside it. Each
// line of NAME.want is either a directive ("stack: NAME", "var: NAME=VALUE")
// or an expected error "FILE:LINE: SUBSTRING" or "FILE:LINE:COLUMN: SUBSTRING"
// (FILE:0 for an error that has no place in a file). Every error must be
// expected and every expectation met.
type wantDiag struct {
	file      string
	line, col int // col 0: any column
	text      string
}

type invalidCase struct {
	name  string
	opts  Options
	wants []wantDiag
}

func readInvalidCase(t testing.TB, name string) invalidCase {
	c := invalidCase{name: name, opts: Options{Stack: "test", Dir: "testdata/invalid", Files: []string{name + ".hcl"}}}
	f, err := os.Open(filepath.Join("testdata/invalid", name+".want"))
	if err != nil {
		if *update {
			return c
		}
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "stack: "):
			c.opts.Stack = strings.TrimPrefix(line, "stack: ")
		case strings.HasPrefix(line, "var: "):
			k, v, _ := strings.Cut(strings.TrimPrefix(line, "var: "), "=")
			c.opts.Vars = append(c.opts.Vars, RawVar{Name: k, Value: v})
		default:
			loc, text, ok := strings.Cut(line, ": ")
			file, ln, ok2 := strings.Cut(loc, ":")
			ln, col, hasCol := strings.Cut(ln, ":")
			n, err := strconv.Atoi(ln)
			w := wantDiag{file: file, line: n, text: text}
			if hasCol && err == nil {
				w.col, err = strconv.Atoi(col)
			}
			if !ok || !ok2 || err != nil {
				t.Fatalf("%s.want: bad line %q", name, line)
			}
			c.wants = append(c.wants, w)
		}
	}
	return c
}

func invalidBundle(t testing.TB, name string) Bundle {
	if src, ok := invalidVariants[name]; ok {
		return Bundle{name + ".hcl": []byte(src)}
	}
	src, err := os.ReadFile(filepath.Join("testdata/invalid", name+".hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return Bundle{name + ".hcl": src}
}

func diagLoc(d *hcl.Diagnostic) (file string, line, col int) {
	if d.Subject == nil {
		return "-", 0, 0
	}
	return filepath.Base(d.Subject.Filename), d.Subject.Start.Line, d.Subject.Start.Column
}

func invalidNames(t testing.TB) []string {
	files, err := filepath.Glob("testdata/invalid/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".hcl"))
	}
	for name := range invalidVariants {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestInvalidTemplates(t *testing.T) {
	names := invalidNames(t)
	if len(names) < 45 {
		t.Fatalf("only %d invalid cases", len(names))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c := readInvalidCase(t, name)
			st, diags := Load(invalidBundle(t, name), c.opts)
			if st != nil {
				t.Errorf("Load returned a stack despite errors")
			}
			if !diags.HasErrors() {
				t.Fatalf("no error")
			}
			if *update {
				writeWant(t, c, diags)
				return
			}
			used := make([]bool, len(c.wants))
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				file, line, col := diagLoc(d)
				text := d.Summary + "; " + d.Detail
				found := false
				for i, w := range c.wants {
					if w.file == file && w.line == line && (w.col == 0 || w.col == col) && strings.Contains(text, w.text) {
						used[i], found = true, true
					}
				}
				if !found {
					t.Errorf("unexpected error %s:%d:%d: %s", file, line, col, text)
				}
			}
			for i, w := range c.wants {
				if !used[i] {
					t.Errorf("missing error %s:%d:%d: %s", w.file, w.line, w.col, w.text)
				}
			}
			// every error points at a line with the snippet available
			var buf bytes.Buffer
			if err := WriteDiagnostics(&buf, diags, invalidBundle(t, name), c.opts, 100, false); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func writeWant(t *testing.T, c invalidCase, diags hcl.Diagnostics) {
	var b strings.Builder
	if c.opts.Stack != "test" {
		fmt.Fprintf(&b, "stack: %s\n", c.opts.Stack)
	}
	for _, v := range c.opts.Vars {
		fmt.Fprintf(&b, "var: %s=%s\n", v.Name, v.Value)
	}
	for _, d := range diags {
		file, line, col := diagLoc(d)
		fmt.Fprintf(&b, "%s:%d:%d: %s\n", file, line, col, d.Summary+"; "+d.Detail)
	}
	if err := os.WriteFile(filepath.Join("testdata/invalid", c.name+".want"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
