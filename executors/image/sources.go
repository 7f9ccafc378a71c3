package image

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The cache is shared by every stack and project of a host, and a sha256
// alone must not open it: a member who learns another project's image hash
// could otherwise boot that image by naming the hash with any source. So a
// cached image is handed out only to a template whose source is known to
// deliver it: each image has a file in the sources directory (outside the
// pool) with the sha256 of every source that delivered it, and a template
// with another source fetches it once more, which proves the source really
// holds those bytes. Caches from before this record refetch once.

// sourcesDir is where the per-image source records live.
func sourcesDir(poolDir string) string {
	return filepath.Join(filepath.Dir(poolDir), filepath.Base(poolDir)+".sources")
}

func sourceKey(source string) string {
	sum := sha256.Sum256([]byte(source))
	return hex.EncodeToString(sum[:])
}

// delivered reports whether source is recorded as delivering image sum.
func (c *Cache) delivered(sum, source string) bool {
	f, err := os.Open(filepath.Join(c.sources, sum))
	if err != nil {
		return false
	}
	defer f.Close()
	key := sourceKey(source)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == key {
			return true
		}
	}
	return false
}

// remember records that source delivered image sum.
func (c *Cache) remember(sum, source string) error {
	if c.delivered(sum, source) {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(c.sources, sum), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("image %s: record its source: %w", sum, err)
	}
	_, err = fmt.Fprintln(f, sourceKey(source))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("image %s: record its source: %w", sum, err)
	}
	return nil
}

// forget drops the source record of image sum (it was deleted).
func (c *Cache) forget(sum string) error {
	if err := os.Remove(filepath.Join(c.sources, sum)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image %s: drop its source record: %w", sum, err)
	}
	return nil
}
