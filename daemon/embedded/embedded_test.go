package embedded

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An existing .kiln made with 0755/0644 (an older kiln) is tightened at
// start: it holds the state, bundles and the management token.
func TestStartTightensExistingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".kiln")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n, err := Start(ctx, Config{Dir: dir, Driver: DriverMemory})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	loose := map[string]os.FileMode{
		"": 0o755, ServerDir: 0o755, LockFile: 0o644, RaftPortFile: 0o644,
		"server/management.token": 0o644, "server/wal/wal-meta.db": 0o644,
	}
	for p, mode := range loose {
		if err := os.Chmod(filepath.Join(dir, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	n, err = Start(ctx, Config{Dir: dir, Driver: DriverMemory})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for p, was := range loose {
		want := os.FileMode(0o600)
		if was == 0o755 {
			want = 0o700
		}
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", filepath.Join(dir, p), got, want)
		}
	}
}
