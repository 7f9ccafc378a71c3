package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// A bundle over the blob limit is refused with 413 naming the limit, before
// anything reaches the raft log.
func TestPlanTooLargeRefusedBeforeRaft(t *testing.T) {
	s, mgmt := single(t, nil)
	big := bundle(map[string]string{"main.hcl": "# nothing\n", "blob.txt": strings.Repeat("a", 7<<20)})
	before := s.Store().Raft().LastIndex()
	for _, path := range []string{"/v1/stacks/big/plan", "/v1/stacks/big/apply"} {
		var body any = api.PlanRequest{Template: *big}
		if strings.HasSuffix(path, "apply") {
			body = api.ApplyRequest{Template: big}
		}
		code, out := mgmt.do("POST", path, body)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(out), "limit of 8388608 bytes") {
			t.Fatalf("%s: %d %s, want 413 naming the limit", path, code, out)
		}
	}
	if after := s.Store().Raft().LastIndex(); after != before {
		t.Fatalf("raft log moved from %d to %d for a refused bundle", before, after)
	}
}

// Plans of a reader expire (PlanTTL) and the blob count returns to what it
// was; a plan id is then gone (404).
func TestPlansExpireBlobsReturnToBaseline(t *testing.T) {
	s, mgmt := single(t, func(c *Config) { c.PlanTTL = 200 * time.Millisecond })
	var tc api.TokenCreated
	mgmt.must("POST", "/v1/tokens", api.TokenRequest{Project: "p1", Role: "reader"}, http.StatusCreated, &tc)
	reader := client{t: t, addr: s.Addr(), token: tc.Secret}
	base, _ := s.Store().State().BlobStats()
	var last api.PlanResponse
	for i := range 30 {
		tpl := mainHCL(fmt.Sprintf("# plan %d\n", i))
		reader.must("POST", fmt.Sprintf("/v1/stacks/s%d/plan", i%7), api.PlanRequest{Template: *tpl}, http.StatusOK, &last)
	}
	if n, _ := s.Store().State().BlobStats(); n <= base {
		t.Fatalf("%d blobs after 30 plans, baseline %d: plans were not stored", n, base)
	}
	testwait.ForNil(t, 20*time.Second, "the expired plans' blobs to be deleted", func() error {
		if n, _ := s.Store().State().BlobStats(); n != base {
			return fmt.Errorf("%d blobs, want the baseline %d", n, base)
		}
		return nil
	})
	code, out := mgmt.do("POST", "/v1/stacks/s2/apply?project=p1", api.ApplyRequest{PlanID: last.PlanID})
	if code != http.StatusNotFound {
		t.Fatalf("apply of an expired plan: %d %s, want 404", code, out)
	}
}

// A state bigger than the API's body limit saves and restores: restore takes
// whatever save wrote. A snapshot with dangling references is refused and the
// state stays as it was.
func TestSnapshotLargeRoundTripAndDanglingRefused(t *testing.T) {
	s, mgmt := single(t, nil)
	for i := range 5 {
		tpl := bundle(map[string]string{"main.hcl": "# nothing\n", "blob.txt": strings.Repeat(string(rune('a'+i)), 5<<20)})
		mgmt.must("POST", fmt.Sprintf("/v1/stacks/big%d/apply", i), api.ApplyRequest{Template: tpl}, http.StatusOK, nil)
	}
	code, snap := mgmt.do("GET", "/v1/operator/snapshot", nil)
	if code != http.StatusOK {
		t.Fatalf("save: %d %s", code, snap)
	}
	if len(snap) <= api.MaxBodyBytes {
		t.Fatalf("snapshot of %d bytes is not over the body limit %d: the test proves nothing", len(snap), api.MaxBodyBytes)
	}
	t.Logf("snapshot: %d bytes", len(snap))
	mgmt.must("DELETE", "/v1/stacks/big0", nil, http.StatusAccepted, nil)
	if code, out := mgmt.do("PUT", "/v1/operator/snapshot", snap); code != http.StatusNoContent {
		t.Fatalf("restore of a %d-byte snapshot save wrote: %d %.300s", len(snap), code, out)
	}
	if _, ok := s.Store().State().Stack("default", "big0"); !ok {
		t.Fatal("restore did not bring back stack big0")
	}

	// Dangling: the stacks' bundles are cut out of the snapshot.
	bad := snap
	for i := range 5 {
		st, _ := s.Store().State().Stack("default", fmt.Sprintf("big%d", i))
		bad = bytes.Replace(bad, []byte(`"Hash":"`+st.BundleHash+`"`), []byte(`"Hash":"sha256:gone"`), 1)
	}
	idx := s.Store().State().Index()
	code, out := mgmt.do("PUT", "/v1/operator/snapshot", bad)
	if code != http.StatusBadRequest || !strings.Contains(string(out), "refers to bundle blob") {
		t.Fatalf("restore with dangling references: %d %.500s, want 400 naming them", code, out)
	}
	if got := s.Store().State().Index(); got != idx {
		t.Fatalf("state index moved from %d to %d after a refused restore", idx, got)
	}
	if n := len(s.Store().State().Stacks("default")); n != 5 {
		t.Fatalf("%d stacks after a refused restore, want 5", n)
	}
}

// The data directory and its files are private, and an existing one made
// with 0755/0644 is tightened at start.
func TestServerDataDirPermissions(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Bootstrap = true
	s := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	s.Shutdown(ctx)
	for _, p := range []string{"", NodeIDFile, ManagementTokenFile, "wal", "wal/wal-meta.db", "snapshots"} {
		mode := os.FileMode(0o644)
		if p == "" || p == "snapshots" || p == "wal" {
			mode = 0o755
		}
		if err := os.Chmod(filepath.Join(cfg.DataDir, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	cfg.RaftAddr = testnet.FreeAddr(t)
	s = startServer(t, cfg)
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		"": 0o700, NodeIDFile: 0o600, ManagementTokenFile: 0o600, "wal": 0o700, "wal/wal-meta.db": 0o600, "snapshots": 0o700,
	} {
		got, err := filepathInfo(filepath.Join(cfg.DataDir, p))
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: mode %o, want %o", filepath.Join(cfg.DataDir, p), got, want)
		}
	}
}
