package realprocess

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

var (
	buildOnce sync.Once
	kilnBin   string
	buildErr  error
)

// kiln builds the kiln binary once per test binary.
func kiln(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-bin-")
		if err != nil {
			buildErr = err
			return
		}
		kilnBin = filepath.Join(dir, "kiln")
		out, err := exec.Command("go", "build", "-o", kilnBin, "github.com/kiln-dev/kiln").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return kilnBin
}

// proc is one kiln process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

func start(t testing.TB, name, logDir string, env []string, args ...string) *proc {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kiln(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

// node is one server of the trio.
type node struct {
	dir, http, raft string
	p               *proc
}

// cluster is three kiln server processes on loopback.
type cluster struct {
	t      testing.TB
	root   string
	nodes  []*node
	token  string
	logDir string
}

func (c *cluster) args(i int) []string {
	n := c.nodes[i]
	a := []string{"server", "-data-dir", n.dir, "-http-addr", n.http, "-raft-addr", n.raft, "-log-level", "warn", "-leave-on-shutdown=false"}
	if i == 0 {
		return append(a, "-bootstrap")
	}
	return append(a, "-join", c.nodes[0].http)
}

func (c *cluster) startNode(i int) {
	env := []string{}
	if c.token != "" {
		env = append(env, "KILN_TOKEN="+c.token)
	}
	c.nodes[i].p = start(c.t, fmt.Sprintf("server%d", i), c.logDir, env, c.args(i)...)
}

// newCluster starts a bootstrapped server and joins two more.
func newCluster(t testing.TB) *cluster {
	root := t.TempDir()
	c := &cluster{t: t, root: root, logDir: root}
	for i := 0; i < 3; i++ {
		c.nodes = append(c.nodes, &node{dir: filepath.Join(root, fmt.Sprintf("s%d", i)), http: testnet.FreeAddr(t), raft: testnet.FreeAddr(t)})
	}
	c.startNode(0)
	tokFile := filepath.Join(c.nodes[0].dir, "management.token")
	testwait.For(t, 30*time.Second, "management token", func() bool {
		b, err := os.ReadFile(tokFile)
		c.token = strings.TrimSpace(string(b))
		return err == nil && c.token != ""
	})
	testwait.For(t, 30*time.Second, "first leader", func() bool { return c.leader() == 0 })
	c.startNode(1)
	c.startNode(2)
	testwait.For(t, 60*time.Second, "three voters", func() bool {
		peers, err := c.client().Peers(context.Background())
		voters := 0
		for _, p := range peers {
			if p.Voter {
				voters++
			}
		}
		return err == nil && voters == 3
	})
	return c
}

// client talks to the servers not known dead.
func (c *cluster) client(skip ...int) *client.Client {
	var addrs []string
	for i, n := range c.nodes {
		if !containsInt(skip, i) {
			addrs = append(addrs, n.http)
		}
	}
	cl, err := client.New(client.Config{Addr: strings.Join(addrs, ","), Token: c.token, RetryPause: 50 * time.Millisecond, Rounds: 40})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

func containsInt(l []int, x int) bool {
	for _, v := range l {
		if v == x {
			return true
		}
	}
	return false
}

// leader returns the index of the server that says it is the leader, -1
// when none does.
func (c *cluster) leader(skip ...int) int {
	cl := c.client()
	for i, n := range c.nodes {
		if containsInt(skip, i) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := cl.HealthOf(ctx, n.http)
		cancel()
		if err == nil && h.Leader {
			return i
		}
	}
	return -1
}

// dumpLogs prints the processes' logs when a test failed.
func (c *cluster) dumpLogs() {
	if !c.t.Failed() {
		return
	}
	files, _ := filepath.Glob(filepath.Join(c.logDir, "*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		s := bufio.NewScanner(fh)
		var lines []string
		for s.Scan() {
			lines = append(lines, s.Text())
		}
		fh.Close()
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		c.t.Logf("--- %s (last lines)\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
}

var _ = api.Health{}
