package image_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/internal/libvirttest"
)

func TestMain(m *testing.M) { os.Exit(libvirttest.Main(m)) }

func newCache(t testing.TB) *image.Cache {
	t.Helper()
	c, err := image.New(libvirttest.Conn(t), libvirttest.Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	// The tests serve images from loopback and temporary files.
	c.SetPolicy(permissive)
	t.Cleanup(func() {
		c.Prune(context.Background(), nil)
		c.Close()
	})
	return c
}

// blob returns n pseudo-random bytes, starting with the qcow2 magic when
// qcow2 is set, and their sha256.
func blob(n int, qcow2 bool, seed int64) ([]byte, string) {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	if qcow2 {
		copy(b, "QFI\xfb")
	} else {
		copy(b, "RAW!")
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// server serves body at /img, counting requests; each answer waits for
// delay first so concurrent requests overlap.
func server(t testing.TB, body []byte, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(delay)
		http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestFetchVerifiesAndCaches(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	for _, qcow2 := range []bool{true, false} {
		body, sum := blob(3<<20+17, qcow2, 1)
		srv, hits := server(t, body, 0)
		var last [2]int64
		img, err := c.Create(ctx, image.Template{Source: srv.URL + "/img", SHA256: sum}, func(done, total int64) { last = [2]int64{done, total} })
		if err != nil {
			t.Fatal(err)
		}
		want := "raw"
		if qcow2 {
			want = "qcow2"
		}
		if img.SHA256 != sum || img.Format != want || img.Volume != sum+"."+want || img.Size != int64(len(body)) {
			t.Fatalf("image = %+v", img)
		}
		if last != [2]int64{int64(len(body)), int64(len(body))} {
			t.Errorf("last progress = %v, want done = total = %d", last, len(body))
		}
		got, err := os.ReadFile(filepath.Join(c.Dir(), img.Volume))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("cached file differs from the source (err %v)", err)
		}
		// A second stack asking for the same image fetches nothing.
		again, err := c.Create(ctx, image.Template{Source: srv.URL + "/img", SHA256: sum}, nil)
		if err != nil || again != img {
			t.Fatalf("second Create = %+v, %v", again, err)
		}
		if n := hits.Load(); n != 1 {
			t.Errorf("server hits = %d, want 1", n)
		}
		read, err := c.Read(ctx, sum)
		if err != nil || read != img {
			t.Fatalf("Read = %+v, %v", read, err)
		}
	}
	// libvirt lists the images as volumes of kiln-images.
	conn, _ := libvirttest.Shared(t).Connect()
	defer conn.Close()
	pool, err := conn.LookupStoragePoolByName(image.PoolName)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Free()
	if n, err := pool.NumOfStorageVolumes(); err != nil || n != 2 {
		t.Errorf("kiln-images holds %d volumes (%v), want 2", n, err)
	}
	if auto, _ := pool.GetAutostart(); !auto {
		t.Errorf("kiln-images is not autostarted")
	}
}

func TestChecksumMismatchCachesNothing(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	body, _ := blob(1<<20, true, 2)
	_, wrong := blob(10, true, 3)
	srv, _ := server(t, body, 0)
	_, err := c.Create(ctx, image.Template{Source: srv.URL + "/img", SHA256: wrong}, nil)
	if !errors.Is(err, image.ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	if list, _ := c.List(ctx); len(list) != 0 {
		t.Errorf("cache holds %v after a mismatch", list)
	}
	if _, err := c.Read(ctx, wrong); !errors.Is(err, executors.ErrNotFound) {
		t.Errorf("Read(wrong) err = %v, want ErrNotFound", err)
	}
	partial, _ := os.ReadDir(c.Dir() + ".partial")
	if len(partial) != 0 {
		t.Errorf("temporary files left: %v", partial)
	}
}

func TestConcurrentRequestsFetchOnce(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	body, sum := blob(2<<20, true, 4)
	srv, hits := server(t, body, 200*time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Create(ctx, image.Template{Source: srv.URL + "/img", SHA256: sum}, nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("server hits = %d for 8 concurrent requests, want 1", n)
	}
}

func TestLocalSourceListPrune(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	var sums []string
	for i := range 3 {
		body, sum := blob(64<<10, i%2 == 0, int64(10+i))
		path := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(path, body, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(ctx, image.Template{Source: path, SHA256: sum}, nil); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sum)
	}
	// A cached image is not served to a source that never delivered it
	// (TestCacheHitNeedsAKnownSource): this one must be fetched, and cannot.
	if _, err := c.Create(ctx, image.Template{Source: "relative/path", SHA256: sums[0]}, nil); err == nil {
		t.Fatalf("a cached image was served to a source that never delivered it")
	}
	if _, err := c.Create(ctx, image.Template{Source: "relative/other"}, nil); err == nil {
		t.Fatalf("a relative path source was accepted")
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("List = %v, %v", list, err)
	}
	removed, err := c.Prune(ctx, map[string]bool{sums[1]: true})
	if err != nil || len(removed) != 2 {
		t.Fatalf("Prune removed %v, %v", removed, err)
	}
	list, _ = c.List(ctx)
	if len(list) != 1 || list[0].SHA256 != sums[1] {
		t.Fatalf("after prune: %v", list)
	}
	for i := 0; i < 2; i++ {
		if err := c.Delete(ctx, sums[1]); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if list, _ = c.List(ctx); len(list) != 0 {
		t.Fatalf("after delete: %v", list)
	}
}

const benchSize = 256 << 20

// BenchmarkFetch is a cache fetch (stream, sha256, temp file, rename,
// pool refresh) over loopback HTTP; compare with BenchmarkPlainCopy.
func BenchmarkFetch(b *testing.B) {
	ctx := context.Background()
	c := newCache(b)
	body, sum := blob(benchSize, true, 5)
	srv, _ := server(b, body, 0)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Create(ctx, image.Template{Source: srv.URL + "/img", SHA256: sum}, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		c.Delete(ctx, sum)
		b.StartTimer()
	}
}

// BenchmarkPlainCopy is the floor: the same bytes over loopback HTTP copied
// to a file in the same directory, no hashing.
func BenchmarkPlainCopy(b *testing.B) {
	c := newCache(b)
	body, _ := blob(benchSize, true, 5)
	srv, _ := server(b, body, 0)
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for range b.N {
		resp, err := http.Get(srv.URL + "/img")
		if err != nil {
			b.Fatal(err)
		}
		f, err := os.CreateTemp(c.Dir()+".partial", "plain-*")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(f, resp.Body, buf); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		f.Close()
		b.StopTimer()
		os.Remove(f.Name())
		b.StartTimer()
	}
}

// A cached image is handed out only to a source known to deliver it: naming
// its sha256 with another source fetches that source, and a source that does
// not hold those bytes gets a checksum error, never the cached image.
func TestCacheHitNeedsAKnownSource(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	body, sum := blob(1<<20, true, 7)
	owner, ownerHits := server(t, body, 0)
	img, err := c.Create(ctx, image.Template{Source: owner.URL + "/secret", SHA256: sum}, nil)
	if err != nil {
		t.Fatal(err)
	}

	other, _ := blob(1<<20, true, 8)
	thief, thiefHits := server(t, other, 0)
	_, err = c.Create(ctx, image.Template{Source: thief.URL + "/x", SHA256: sum}, nil)
	if !errors.Is(err, image.ErrChecksum) {
		t.Fatalf("another source naming a cached sha256: %v, want a checksum error", err)
	}
	if thiefHits.Load() != 1 {
		t.Errorf("the other source was fetched %d times, want 1", thiefHits.Load())
	}
	if got, err := os.ReadFile(filepath.Join(c.Dir(), img.Volume)); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the cached image changed (err %v)", err)
	}

	// A second source holding the same bytes proves it once, then hits.
	mirror, mirrorHits := server(t, body, 0)
	for i := 0; i < 2; i++ {
		again, err := c.Create(ctx, image.Template{Source: mirror.URL + "/copy", SHA256: sum}, nil)
		if err != nil || again != img {
			t.Fatalf("mirror Create %d = %+v, %v", i, again, err)
		}
	}
	if mirrorHits.Load() != 1 || ownerHits.Load() != 1 {
		t.Errorf("hits: mirror %d, owner %d; want 1 each", mirrorHits.Load(), ownerHits.Load())
	}
	// Deleting the image forgets its sources.
	if err := c.Delete(ctx, sum); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, image.Template{Source: owner.URL + "/secret", SHA256: sum}, nil); err != nil || ownerHits.Load() != 2 {
		t.Errorf("after delete: %v, owner hits %d, want a fresh fetch", err, ownerHits.Load())
	}
}
