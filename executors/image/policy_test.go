package image_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/internal/netnstest"
)

// permissive is the embedded default's policy: every local path, loopback
// sources and http without a sha256 allowed.
var permissive = image.Policy{AllowDirs: []string{"/"}, AllowInsecureHTTP: true, AllowLocalSources: true}

// wantRule checks that err is a PolicyError of the rule.
func wantRule(t *testing.T, what string, err error, rule string) {
	t.Helper()
	var pe *image.PolicyError
	if !errors.As(err, &pe) || pe.Rule != rule || !errors.Is(err, image.ErrRefused) {
		t.Fatalf("%s: err = %v, want a %s refusal", what, err, rule)
	}
}

func TestLocalPathPolicy(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	allowed := t.TempDir()
	outside := t.TempDir()
	body, sum := blob(32<<10, true, 20)
	secret, secretSum := blob(1<<10, false, 21)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(allowed, "img.qcow2"), body, 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret"), secret, 0o600))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(allowed, "escape")))
	must(os.Symlink("img.qcow2", filepath.Join(allowed, "inside")))
	must(os.Mkdir(filepath.Join(allowed, "sub"), 0o755))
	must(os.Symlink(outside, filepath.Join(allowed, "sub", "dir")))
	// The allowed directory given through a link of its own.
	link := filepath.Join(t.TempDir(), "images")
	must(os.Symlink(allowed, link))

	c.SetPolicy(image.Policy{AllowDirs: []string{link}})
	refused := []struct{ name, path, sum string }{
		{"a file outside", filepath.Join(outside, "secret"), ""},
		{"a link escaping the allowed directory", filepath.Join(allowed, "escape"), ""},
		{"a link escaping, with the right sha256", filepath.Join(allowed, "escape"), secretSum},
		{"a directory link escaping", filepath.Join(allowed, "sub", "dir", "secret"), ""},
		{"dot-dot out of the allowed directory", allowed + "/../" + filepath.Base(outside) + "/secret", ""},
		{"a host file", "/etc/passwd", ""},
		{"a prefix that is not a parent", allowed + "-x/img", ""},
	}
	for _, tt := range refused {
		_, err := c.Create(ctx, image.Template{Source: tt.path, SHA256: tt.sum}, nil)
		wantRule(t, tt.name, err, image.RuleLocalPath)
		if strings.Contains(err.Error(), string(secret[:8])) {
			t.Fatalf("%s: the error shows the file's content", tt.name)
		}
	}
	if list, _ := c.List(ctx); len(list) != 0 {
		t.Fatalf("refused sources cached %v", list)
	}
	for _, p := range []string{filepath.Join(allowed, "inside"), filepath.Join(link, "img.qcow2"), filepath.Join(allowed, "sub", "..", "img.qcow2")} {
		img, err := c.Create(ctx, image.Template{Source: p}, nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if img.SHA256 != sum {
			t.Fatalf("%s: sha256 %s, want %s", p, img.SHA256, sum)
		}
	}

	// Without allowed directories no local path is read.
	c.SetPolicy(image.Policy{})
	c.Delete(ctx, sum)
	_, err := c.Create(ctx, image.Template{Source: filepath.Join(allowed, "img.qcow2")}, nil)
	wantRule(t, "no allowed directories", err, image.RuleLocalPath)
}

func TestPolicyCheckLocalPathResolves(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("vmlinuz", filepath.Join(dir, "current")); err != nil {
		t.Fatal(err)
	}
	real, err := image.Policy{AllowDirs: []string{dir}}.CheckLocalPath(filepath.Join(dir, "current"))
	if err != nil || real != filepath.Join(dir, "vmlinuz") {
		t.Fatalf("CheckLocalPath = %q, %v; want the link's target", real, err)
	}
	if _, err := (image.Policy{AllowDirs: []string{dir}}).CheckLocalPath("relative"); err == nil {
		t.Fatal("a relative path was accepted")
	}
}

func TestInsecureHTTPPolicy(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	body, sum := blob(16<<10, true, 22)
	srv, hits := server(t, body, 0)
	c.SetPolicy(image.Policy{AllowLocalSources: true})
	_, err := c.Create(ctx, image.Template{Source: srv.URL + "/img"}, nil)
	wantRule(t, "http without sha256", err, image.RuleInsecureHTTP)
	if hits.Load() != 0 {
		t.Fatalf("the refused source was fetched")
	}
	// With a sha256 the bytes are checked: http is fine.
	if _, err := c.Create(ctx, image.Template{Source: srv.URL + "/img", SHA256: sum}, nil); err != nil {
		t.Fatal(err)
	}
	c.Delete(ctx, sum)
	c.SetPolicy(image.Policy{AllowLocalSources: true, AllowInsecureHTTP: true})
	if img, err := c.Create(ctx, image.Template{Source: srv.URL + "/img"}, nil); err != nil || img.SHA256 != sum {
		t.Fatalf("allowed http without sha256: %+v, %v", img, err)
	}
}

func TestLocalSourcePolicy(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	body, sum := blob(16<<10, true, 23)
	srv, hits := server(t, body, 0)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	c.SetPolicy(image.Policy{}) // a remote agent's default
	for _, u := range []string{
		srv.URL + "/img",
		"http://localhost:" + port + "/img", // a name: checked once resolved
		"http://[::ffff:127.0.0.1]:" + port + "/img",
		"http://0.0.0.0:" + port + "/img",
		"http://169.254.169.254/latest/meta-data/",
	} {
		_, err := c.Create(ctx, image.Template{Source: u, SHA256: sum}, nil)
		wantRule(t, u, err, image.RuleLocalSource)
	}
	if hits.Load() != 0 {
		t.Fatalf("a refused source was fetched %d times", hits.Load())
	}
	c.SetPolicy(image.Policy{AllowLocalSources: true})
	if _, err := c.Create(ctx, image.Template{Source: srv.URL + "/img", SHA256: sum}, nil); err != nil {
		t.Fatalf("loopback allowed: %v", err)
	}
}

// remoteServer serves h from another namespace at 192.0.2.2 (an address
// that is not this host's), returning its base URL.
func remoteServer(t *testing.T, h http.Handler) string {
	t.Helper()
	netnstest.Guard(t)
	ns := netnstest.New(t)
	netnstest.Veth(t, ns, "ki-img0", "ki-img1", "192.0.2.1/24", "192.0.2.2/24")
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "192.0.2.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestRedirectsChecked(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	body, sum := blob(16<<10, true, 24)
	local, localHits := server(t, body, 0)
	mux := http.NewServeMux()
	mux.HandleFunc("/to-loopback", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, local.URL+"/img", http.StatusFound)
	})
	mux.HandleFunc("/loop/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		http.Redirect(w, r, fmt.Sprintf("/loop/%d", n+1), http.StatusFound)
	})
	mux.HandleFunc("/hops/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		if n > 0 {
			http.Redirect(w, r, fmt.Sprintf("/hops/%d", n-1), http.StatusFound)
			return
		}
		http.ServeContent(w, r, "img", time.Time{}, bytes.NewReader(body))
	})
	remote := remoteServer(t, mux)
	c.SetPolicy(image.Policy{})

	_, err := c.Create(ctx, image.Template{Source: remote + "/to-loopback", SHA256: sum}, nil)
	wantRule(t, "redirect to loopback", err, image.RuleLocalSource)
	if localHits.Load() != 0 {
		t.Fatalf("the redirect's refused target was fetched")
	}
	_, err = c.Create(ctx, image.Template{Source: remote + "/loop/0", SHA256: sum}, nil)
	wantRule(t, "endless redirects", err, image.RuleRedirects)
	// http:// without sha256 reached by a redirect is refused like a source.
	_, err = c.Create(ctx, image.Template{Source: remote + "/hops/1"}, nil)
	wantRule(t, "http without sha256", err, image.RuleInsecureHTTP)
	// A few redirects to an allowed address are fine.
	if img, err := c.Create(ctx, image.Template{Source: remote + fmt.Sprintf("/hops/%d", image.MaxRedirects), SHA256: sum}, nil); err != nil || img.SHA256 != sum {
		t.Fatalf("%d redirects: %+v, %v", image.MaxRedirects, img, err)
	}
}

func TestCachePermissions(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	c.SetPolicy(permissive)
	body, sum := blob(16<<10, true, 25)
	src := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(src, body, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := c.Create(ctx, image.Template{Source: src, SHA256: sum}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		want os.FileMode
	}{
		{img.Path, 0o600},
		{c.Dir() + ".partial", 0o700},
		{c.Dir(), 0o711},
	} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != f.want {
			t.Errorf("%s: mode %o, want %o", f.path, got, f.want)
		}
	}
}
