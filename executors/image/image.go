// Package image is the host's content-addressed image cache: a libvirt
// directory storage pool "kiln-images", shared by every stack, whose
// volumes are named by the sha256 of their bytes ("<sha256>.qcow2" or
// "<sha256>.raw").
//
// A fetch streams the source (http://, https:// or an absolute path) into a
// temporary file while hashing it in the same pass; only a verified file is
// renamed into the pool, so a mismatch leaves nothing cached. Concurrent
// requests for one image share one fetch.
//
// What a source may be is the host's Policy (policy.go): local paths only
// under allowed directories, no http:// without a sha256, no source on the
// host itself or its link, redirects bounded and checked again. Cached
// images and partial downloads are 0600 (they hold whatever the source
// held), the partial directory 0700, the pool directory 0711.
package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"libvirt.org/go/libvirt"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/volume"
)

// PoolName is the libvirt storage pool of the image cache.
const PoolName = "kiln-images"

// Formats of cached images, detected from their first bytes.
const (
	QCOW2 = "qcow2"
	Raw   = "raw"
)

// ErrChecksum is returned when fetched bytes do not hash to the expected
// sha256.
var ErrChecksum = errors.New("sha256 mismatch")

// Template is an image resource as the template gives it.
type Template struct {
	Source string // http://, https:// or an absolute path
	SHA256 string // hex; empty means "whatever the source holds", fetched every time
}

// Image is a cached image.
type Image struct {
	SHA256 string
	Format string // qcow2 or raw
	Volume string // volume name in kiln-images
	Path   string
	Size   int64 // bytes of the file
}

// Progress is told how many bytes are fetched so far, and the total
// (-1 when unknown). It is called from the fetching goroutine.
type Progress func(done, total int64)

// Cache is the image cache of one host.
type Cache struct {
	pool    *libvirt.StoragePool
	dir     string // pool directory
	partial string // temporary files, outside the pool
	sources string // which sources delivered each image (sources.go)
	flights singleflight.Group
	mu      sync.Mutex // serializes pool refreshes

	pmu    sync.Mutex
	policy Policy
	tr     *http.Transport

	// BufferSize is the copy buffer of a fetch.
	BufferSize int
}

// New makes sure the kiln-images pool exists (defining it on
// dataDir/images if needed) and returns the cache in it.
func New(conn *libvirt.Connect, dataDir string) (*Cache, error) {
	pool, err := volume.EnsurePool(conn, PoolName, filepath.Join(dataDir, "images"))
	if err != nil {
		return nil, err
	}
	dir, err := volume.PoolPath(pool)
	if err != nil {
		pool.Free()
		return nil, fmt.Errorf("storage pool %s: %w", PoolName, err)
	}
	partial := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".partial")
	// Partial downloads hold whatever the source holds: only the agent
	// reads them. The pool directory is searchable (QEMU, when libvirt
	// runs it as another user, opens the images by path) but not listable.
	if err := mkdirMode(partial, 0o700); err != nil {
		pool.Free()
		return nil, fmt.Errorf("image cache: %w", err)
	}
	if err := volume.TightenDir(dir, volume.PoolDirMode); err != nil {
		pool.Free()
		return nil, fmt.Errorf("image cache: %w", err)
	}
	if err := mkdirMode(sourcesDir(dir), 0o700); err != nil {
		pool.Free()
		return nil, fmt.Errorf("image cache: %w", err)
	}
	return &Cache{
		pool:       pool,
		dir:        dir,
		partial:    partial,
		sources:    sourcesDir(dir),
		tr:         Policy{}.transport(),
		BufferSize: 1 << 20,
	}, nil
}

// SetPolicy sets what templates may make the cache fetch (the zero Policy,
// the strict one, until it is set).
func (c *Cache) SetPolicy(p Policy) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	c.policy = p
	c.tr = p.transport()
}

// Policy is the cache's policy.
func (c *Cache) Policy() Policy {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.policy
}

func (c *Cache) transport() *http.Transport {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.tr
}

// mkdirMode makes dir with mode perm, and takes away from an existing one
// any permission perm does not give.
func mkdirMode(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	return volume.TightenDir(dir, perm)
}

// Close frees the pool handle.
func (c *Cache) Close() error { return c.pool.Free() }

// Dir is the directory of the kiln-images pool.
func (c *Cache) Dir() string { return c.dir }

var hexSHA = regexp.MustCompile(`^[0-9a-f]{64}$`)

func normalize(sum string) (string, error) {
	sum = strings.ToLower(strings.TrimSpace(sum))
	if !hexSHA.MatchString(sum) {
		return "", fmt.Errorf("sha256 %q: want 64 hex digits", sum)
	}
	return sum, nil
}

func (c *Cache) refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pool.Refresh(0)
}

// Read returns the cached image with this sha256, or an error wrapping
// executors.ErrNotFound.
func (c *Cache) Read(ctx context.Context, sum string) (Image, error) {
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	sum, err := normalize(sum)
	if err != nil {
		return Image{}, err
	}
	for _, f := range []string{QCOW2, Raw} {
		name := sum + "." + f
		path := filepath.Join(c.dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			continue
		}
		// The file is the truth; make sure libvirt lists it too.
		if vol, err := c.pool.LookupStorageVolByName(name); err == nil {
			vol.Free()
		} else {
			c.refresh()
		}
		return Image{SHA256: sum, Format: f, Volume: name, Path: path, Size: fi.Size()}, nil
	}
	return Image{}, fmt.Errorf("image %s: %w", sum, executors.ErrNotFound)
}

// Create returns the cached image of t, fetching it first when it is not in
// the cache, or when it is but t's source is not known to deliver it (see
// sources.go). Callers asking for the same source and sha256 at the same
// time share one fetch (progress goes to the caller that started it).
func (c *Cache) Create(ctx context.Context, t Template, progress Progress) (Image, error) {
	if t.SHA256 != "" {
		sum, err := normalize(t.SHA256)
		if err != nil {
			return Image{}, fmt.Errorf("image %s: %w", t.Source, err)
		}
		t.SHA256 = sum
		if img, err := c.Read(ctx, sum); err == nil && c.delivered(sum, t.Source) {
			return img, nil
		}
	}
	ch := c.flights.DoChan(t.Source+"\x00"+t.SHA256, func() (any, error) {
		if t.SHA256 != "" {
			if img, err := c.Read(ctx, t.SHA256); err == nil && c.delivered(t.SHA256, t.Source) {
				return img, nil
			}
		}
		return c.fetch(ctx, t, progress)
	})
	select {
	case <-ctx.Done():
		return Image{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return Image{}, r.Err
		}
		return r.Val.(Image), nil
	}
}

func (c *Cache) open(ctx context.Context, source, sum string) (io.ReadCloser, int64, error) {
	p := c.Policy()
	switch {
	case strings.HasPrefix(source, "http://"), strings.HasPrefix(source, "https://"):
		scheme, _, _ := strings.Cut(source, ":")
		resp, err := c.openHTTP(ctx, p, source, sum, scheme)
		if err != nil {
			return nil, 0, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("GET %s: %s", source, resp.Status)
		}
		return resp.Body, resp.ContentLength, nil
	case filepath.IsAbs(source):
		f, err := p.openLocal(source)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			return nil, 0, fmt.Errorf("%s is not a regular file", source)
		}
		return f, fi.Size(), nil
	}
	return nil, 0, fmt.Errorf("source %q: want http://, https:// or an absolute path", source)
}

// fetch streams the source into a temporary file, hashing and counting in
// the same pass, and renames it into the pool once the sum is verified.
func (c *Cache) fetch(ctx context.Context, t Template, progress Progress) (Image, error) {
	body, total, err := c.open(ctx, t.Source, t.SHA256)
	if err != nil {
		return Image{}, fmt.Errorf("fetch image %s: %w", t.Source, err)
	}
	defer body.Close()
	tmp, err := os.CreateTemp(c.partial, "fetch-*")
	if err != nil {
		return Image{}, fmt.Errorf("fetch image %s: %w", t.Source, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	h := sha256.New()
	m := &meter{total: total, progress: progress}
	buf := make([]byte, c.BufferSize)
	// Cancellation: the http body already follows ctx; a file does not.
	n, err := io.CopyBuffer(io.MultiWriter(tmp, h, m), ctxReader{ctx, body}, buf)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Image{}, fmt.Errorf("fetch image %s: %w", t.Source, err)
	}
	if total >= 0 && n != total {
		return Image{}, fmt.Errorf("fetch image %s: got %d bytes, want %d", t.Source, n, total)
	}
	m.flush()
	sum := hex.EncodeToString(h.Sum(nil))
	if t.SHA256 != "" && sum != t.SHA256 {
		return Image{}, fmt.Errorf("fetch image %s: got sha256 %s, want %s: %w", t.Source, sum, t.SHA256, ErrChecksum)
	}
	format := Raw
	if bytes.HasPrefix(m.head, []byte("QFI\xfb")) {
		format = QCOW2
	}
	name := sum + "." + format
	path := filepath.Join(c.dir, name)
	if err := c.remember(sum, t.Source); err != nil {
		return Image{}, err
	}
	if img, err := c.Read(ctx, sum); err == nil {
		// Cached already (another source delivered the same bytes): keep
		// that file, which guests may be using.
		return img, nil
	}
	// Only the agent (and QEMU, through libvirt's relabelling) reads a
	// cached image: it may hold what the template's source held.
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return Image{}, fmt.Errorf("fetch image %s: %w", t.Source, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Image{}, fmt.Errorf("fetch image %s: %w", t.Source, err)
	}
	c.refresh()
	return Image{SHA256: sum, Format: format, Volume: name, Path: path, Size: n}, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// meter counts bytes, keeps the first ones (for format detection) and
// reports progress at most every 100ms.
type meter struct {
	done, total int64
	head        []byte
	progress    Progress
	last        time.Time
}

func (m *meter) Write(p []byte) (int, error) {
	if len(m.head) < 8 {
		k := min(8-len(m.head), len(p))
		m.head = append(m.head, p[:k]...)
	}
	m.done += int64(len(p))
	if m.progress != nil {
		if now := time.Now(); now.Sub(m.last) >= 100*time.Millisecond {
			m.last = now
			m.progress(m.done, m.total)
		}
	}
	return len(p), nil
}

func (m *meter) flush() {
	if m.progress != nil {
		m.progress(m.done, m.total)
	}
}

// Delete removes the cached image with this sha256; a missing one is fine.
// The caller makes sure no stack uses it (see Prune).
func (c *Cache) Delete(ctx context.Context, sum string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sum, err := normalize(sum)
	if err != nil {
		return err
	}
	for _, f := range []string{QCOW2, Raw} {
		name := sum + "." + f
		if vol, err := c.pool.LookupStorageVolByName(name); err == nil {
			derr := vol.Delete(0)
			vol.Free()
			if derr != nil && !volume.IsCode(derr, libvirt.ERR_NO_STORAGE_VOL) {
				if _, serr := os.Stat(filepath.Join(c.dir, name)); serr == nil {
					return fmt.Errorf("delete image %s: %w", name, derr)
				}
			}
		}
		if err := os.Remove(filepath.Join(c.dir, name)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("delete image %s: %w", name, err)
		}
	}
	c.refresh()
	return c.forget(sum)
}

// List returns the cached images, sorted by sha256 (`kiln image list`).
func (c *Cache) List(ctx context.Context) ([]Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Image
	for _, e := range entries {
		sum, format, ok := strings.Cut(e.Name(), ".")
		if !ok || !hexSHA.MatchString(sum) || (format != QCOW2 && format != Raw) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, Image{SHA256: sum, Format: format, Volume: e.Name(), Path: filepath.Join(c.dir, e.Name()), Size: fi.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SHA256 < out[j].SHA256 })
	return out, nil
}

// Prune deletes every cached image whose sha256 is not in inUse (`kiln
// image prune`) and returns what it removed.
func (c *Cache) Prune(ctx context.Context, inUse map[string]bool) ([]Image, error) {
	all, err := c.List(ctx)
	if err != nil {
		return nil, err
	}
	var removed []Image
	for _, img := range all {
		if inUse[img.SHA256] {
			continue
		}
		if err := c.Delete(ctx, img.SHA256); err != nil {
			return removed, err
		}
		removed = append(removed, img)
	}
	return removed, nil
}
