package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/kiln-dev/kiln/spec"
)

const fmtUsage = `Usage: kiln fmt [options] PATH

  Rewrite the template files at PATH in the canonical style (aligned equals
  signs, two-space indentation). PATH is a .hcl file, a directory (its
  top-level *.hcl files; -recursive for subdirectories too), or - to format
  standard input to standard output. The names of the files that changed are
  printed.

Options:
  -check      Change nothing; list the files that are not formatted and exit 1
              if there are any.
  -diff       Print the changes as a unified diff.
  -recursive  Also format *.hcl files in subdirectories (dot-directories are
              skipped).
  -no-color   Do not colour diagnostics.
`

func runFmt(e *Env, c *command, args []string) int {
	v := e.newVerb(c, offline, flagNoColor)
	check := v.flags.Bool("check", false, "")
	diff := v.flags.Bool("diff", false, "")
	recursive := v.flags.Bool("recursive", false, "")
	pos, code, ok := v.parse(args, 1)
	if !ok {
		return code
	}
	if pos[0] == "-" {
		return e.fmtStdin(*check, v.noColor)
	}
	files, err := fmtFiles(e.Dir, pos[0], *recursive)
	if err != nil {
		return e.fail("fmt", err)
	}
	exit := ExitOK
	for _, name := range files {
		abs := e.abs(name)
		src, err := os.ReadFile(abs)
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln fmt: %v\n", err)
			exit = ExitError
			continue
		}
		out, diags := formatHCL(src, name)
		if diags.HasErrors() {
			writeFileDiags(e, diags, name, src, v.noColor)
			exit = ExitError
			continue
		}
		if bytes.Equal(src, out) {
			continue
		}
		fmt.Fprintln(e.Stdout, name)
		if *diff {
			fmt.Fprint(e.Stdout, unifiedDiff(name, string(src), string(out)))
		}
		if *check {
			exit = ExitError
			continue
		}
		if err := writeFileKeepMode(abs, out); err != nil {
			fmt.Fprintf(e.Stderr, "kiln fmt: %v\n", err)
			exit = ExitError
		}
	}
	return exit
}

func (e *Env) fmtStdin(check, noColor bool) int {
	src, err := io.ReadAll(e.Stdin)
	if err != nil {
		fmt.Fprintf(e.Stderr, "kiln fmt: stdin: %v\n", err)
		return ExitError
	}
	out, diags := formatHCL(src, "<stdin>")
	if diags.HasErrors() {
		writeFileDiags(e, diags, "<stdin>", src, noColor)
		return ExitError
	}
	if check {
		if !bytes.Equal(src, out) {
			fmt.Fprintln(e.Stdout, "<stdin>")
			return ExitError
		}
		return ExitOK
	}
	e.Stdout.Write(out)
	return ExitOK
}

// formatHCL returns src in canonical style. A file with syntax errors is not
// formatted: the errors are returned instead.
func formatHCL(src []byte, name string) ([]byte, hcl.Diagnostics) {
	return spec.FormatFile(name, src)
}

func writeFileDiags(e *Env, diags hcl.Diagnostics, name string, src []byte, noColor bool) {
	b := spec.Bundle{filepath.ToSlash(name): src}
	spec.WriteDiagnostics(e.Stderr, diags, b, spec.Options{}, e.width(e.Stderr), e.color(e.Stderr, noColor))
}

// fmtFiles lists the files to format: p itself when it is a file, else the
// *.hcl files of the directory (and its subdirectories with recursive, dot-
// directories skipped), sorted, named as the user would write them.
func fmtFiles(dir, p string, recursive bool) ([]string, error) {
	abs := resolve(dir, p)
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(abs, func(q string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if q != abs && (!recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".hcl") {
			rel, err := filepath.Rel(abs, q)
			if err != nil {
				return err
			}
			files = append(files, filepath.Join(p, rel))
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// writeFileKeepMode replaces the file's content through a temporary file and
// a rename, keeping its permissions.
func writeFileKeepMode(name string, data []byte) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".kiln-fmt-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
