package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/daemon/server"
	"github.com/kiln-dev/kiln/internal/testnet"
)

// kiln server over a data directory whose raft log (wal/) was deleted stops at once
// with an error naming the file and the recovery section, instead of
// starting a fresh cluster over the lost writes.
func TestServerRefusesLostRaftLog(t *testing.T) {
	dir := t.TempDir()
	srv, err := server.New(server.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: testnet.FreeAddr(t), Bootstrap: true,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for { // the marker is written within a moment of the first state
		if _, err := os.Stat(filepath.Join(dir, "raft.marker")); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no raft.marker")
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Shutdown(ctx)
	if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
		t.Fatal(err)
	}
	r := kiln(t, nil, "server", "-data-dir", dir, "-raft-addr", testnet.FreeAddr(t), "-http-addr", "127.0.0.1:0", "-bootstrap")
	if r.code == ExitOK {
		t.Fatalf("kiln server started over a deleted raft log: %s", r.stderr)
	}
	for _, want := range []string{filepath.Join(dir, "wal"), "empty or missing", "docs/operations.md"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "panic") {
		t.Errorf("panic:\n%s", r.stderr)
	}
}
