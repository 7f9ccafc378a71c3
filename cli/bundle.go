package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kiln-dev/kiln/spec"
)

// MaxBundleSize caps the total size of a template bundle: everything under
// the template directory is read (file() and templatefile() may use any of
// it), so pointing kiln at a large tree is refused rather than slurped.
const MaxBundleSize = 16 << 20

// ErrBundleTooLarge is returned when a template directory holds more than
// MaxBundleSize bytes.
var ErrBundleTooLarge = errors.New("template bundle too large")

// Template is a template read from disk: the bundle of its directory and
// which entries of it are the template files.
type Template struct {
	// Dir is the template directory as the user named it (relative to the
	// working directory when PATH was relative), used to prefix file names in
	// diagnostics.
	Dir string
	// Bundle holds every regular file under Dir, keyed by slash path.
	Bundle spec.Bundle
	// Files are the bundle keys of the template files, sorted: the one file
	// named by PATH, or every top-level *.hcl of the directory.
	Files []string
	// Name is the default stack name: the file's base name without .hcl, or
	// the directory's name.
	Name string
}

// ReadTemplate reads the template at p, a file or a directory, resolved
// against dir when relative. The bundle is the directory (the file's own
// directory when p is a file): regular files only, dot-directories such as
// .git and .kiln skipped, symlinks followed only when they stay inside it.
func ReadTemplate(dir, p string) (*Template, error) {
	abs := resolve(dir, p)
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	t := &Template{}
	root := abs
	if fi.IsDir() {
		t.Dir = filepath.Clean(p)
		t.Name = filepath.Base(filepath.Clean(abs))
	} else {
		root = filepath.Dir(abs)
		t.Dir = filepath.Dir(filepath.Clean(p))
		base := filepath.Base(abs)
		t.Name = strings.TrimSuffix(base, ".hcl")
		t.Files = []string{base}
	}
	t.Bundle, err = readBundle(root)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		for k := range t.Bundle {
			if !strings.Contains(k, "/") && strings.HasSuffix(k, ".hcl") {
				t.Files = append(t.Files, k)
			}
		}
		sort.Strings(t.Files)
		if len(t.Files) == 0 {
			return nil, fmt.Errorf("%s: no .hcl files in the directory", p)
		}
	} else if _, ok := t.Bundle[t.Files[0]]; !ok {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	return t, nil
}

// readBundle reads every regular file under root.
func readBundle(root string) (spec.Bundle, error) {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	b := spec.Bundle{}
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		target := p
		if d.Type()&fs.ModeSymlink != 0 {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("template bundle: %w", err)
			}
			if !within(realRoot, real) {
				return fmt.Errorf("template bundle: symlink %s points outside the template directory", filepath.ToSlash(rel))
			}
			fi, err := os.Stat(real)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				return fmt.Errorf("template bundle: symlink %s points to a directory; only files may be linked", filepath.ToSlash(rel))
			}
			target = real
		}
		fi, err := os.Stat(target)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil // sockets, fifos, devices: not template content
		}
		total += fi.Size()
		if total > MaxBundleSize {
			return fmt.Errorf("%w: %s holds more than %d MiB; point kiln at a directory with only the template", ErrBundleTooLarge, root, MaxBundleSize>>20)
		}
		data, err := os.ReadFile(target)
		if err != nil {
			return err
		}
		b[path.Clean(filepath.ToSlash(rel))] = data
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// within reports whether p is root or lies under it (both cleaned, absolute).
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}
