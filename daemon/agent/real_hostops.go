package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors/image"
)

var _ HostOps = (*Real)(nil)

// Images lists the image cache (`kiln image list`).
func (r *Real) Images(ctx context.Context) ([]api.ImageInfo, error) {
	imgs, err := r.images.List(ctx)
	if err != nil {
		return nil, err
	}
	return imageInfos(imgs), nil
}

// PruneImages removes the cached images no stack uses (`kiln image prune`).
func (r *Real) PruneImages(ctx context.Context, inUse map[string]bool) ([]api.ImageInfo, error) {
	removed, err := r.images.Prune(ctx, inUse)
	return imageInfos(removed), err
}

func imageInfos(imgs []image.Image) []api.ImageInfo {
	out := make([]api.ImageInfo, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, api.ImageInfo{SHA256: i.SHA256, Format: i.Format, Size: i.Size})
	}
	return out
}

// Orphans lists what `kiln gc` would remove (see the package function).
func (r *Real) Orphans(ctx context.Context, owned func(stack, address string) bool) ([]api.Orphan, error) {
	return Orphans(ctx, r.Drivers(), owned)
}

// RemoveOrphans removes what Orphans listed (`kiln gc -force`).
func (r *Real) RemoveOrphans(ctx context.Context, orphans []api.Orphan) error {
	return RemoveOrphans(ctx, r.Drivers(), orphans)
}

// Console reads the serial console log of the domain name: the log file
// its XML names, or, when the domain is gone, the file the server driver
// would have written (what was logged before it went).
func (r *Real) Console(ctx context.Context, stack, name string, offset, max int64) (ConsoleChunk, error) {
	servers, err := r.srv.List(ctx)
	if err != nil {
		return ConsoleChunk{}, err
	}
	path := ""
	for _, s := range servers {
		if s.Name != name {
			continue
		}
		if s.Stack != stack {
			return ConsoleChunk{}, fmt.Errorf("domain %s belongs to stack %s, not %s", name, s.Stack, stack)
		}
		path = s.ConsoleLog
	}
	if path == "" {
		path = filepath.Join(r.DataDir, "console", name+".log")
	}
	c, err := readChunk(path, offset, max)
	if errors.Is(err, os.ErrNotExist) {
		return ConsoleChunk{}, fmt.Errorf("no console log for %s on this host (the server is not there)", name)
	}
	return c, err
}

// readChunk reads a file from offset, at most max bytes; with offset < 0,
// or an offset past the end (the log was truncated), its last max bytes.
func readChunk(path string, offset, max int64) (ConsoleChunk, error) {
	f, err := os.Open(path)
	if err != nil {
		return ConsoleChunk{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ConsoleChunk{}, err
	}
	size := fi.Size()
	if offset < 0 || offset > size {
		offset = max64(0, size-max)
	}
	n := min(size-offset, max)
	buf := make([]byte, n)
	k, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return ConsoleChunk{}, fmt.Errorf("read %s: %w", path, err)
	}
	return ConsoleChunk{Text: buf[:k], Next: offset + int64(k), Size: size}, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
