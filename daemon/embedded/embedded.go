// Package embedded runs kiln's single-node default: a server and an agent
// in the CLI's own process, with their data in ./.kiln/, on loopback ports
// only, talking to each other with the management token. It is what `kiln
// apply` uses when no KILN_ADDR is set: nothing to set up, and the state
// stays in the directory where the user works.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/server"
	"github.com/kiln-dev/kiln/raftstore"
)

// Files in the embedded directory.
const (
	LockFile     = "lock"
	RaftPortFile = "raft-port"
	ServerDir    = "server"
	AgentDir     = "agent"
	// AgentID is the embedded agent's id.
	AgentID = "local"
)

// DriverMemory selects the in-memory driver (tests only).
const DriverMemory = "memory"

// Config configures an embedded node.
type Config struct {
	// Dir is the data directory (./.kiln), made on first use.
	Dir string
	// Driver is "" for the real executors or DriverMemory for the
	// in-memory driver (tests only).
	Driver string
	// MemoryDelay slows every memory-driver action (tests only).
	MemoryDelay time.Duration
	// NoAgent starts the server alone, for verbs that only read.
	NoAgent bool
	// Accel is the agent's accelerator choice: auto (""), kvm or tcg.
	Accel string
	// CPURatio and MemoryRatio are the agent's allocation ratios (see
	// agent.Config; 0: the scheduler's defaults). The CLI takes them from
	// KILN_CPU_RATIO and KILN_MEMORY_RATIO.
	CPURatio    float64
	MemoryRatio float64
	Logger      *slog.Logger
}

// Node is a running embedded server and agent.
type Node struct {
	Server *server.Server
	Agent  *agent.Agent
	Client *client.Client
	// Memory is the memory driver set when Driver is DriverMemory.
	Memory *agent.Memory

	lock      *os.File
	cancel    context.CancelFunc
	agentDone chan error
}

// LockedError says another process holds the directory.
type LockedError struct {
	Dir string
	PID int
}

func (e *LockedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("another kiln is using %s (pid %d)", e.Dir, e.PID)
	}
	return fmt.Sprintf("another kiln is using %s", e.Dir)
}

// Start locks cfg.Dir, starts the server (bootstrapped, single node) and the
// agent, and waits until the server is ready.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := prepareDir(cfg.Dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	n := &Node{lock: lock}
	ok := false
	defer func() {
		if !ok {
			n.unlock()
		}
	}()
	agentDir := filepath.Join(cfg.Dir, AgentDir)
	if err := os.MkdirAll(agentDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	drivers, err := n.agentDrivers(cfg, agentDir)
	if err != nil {
		return nil, err
	}
	raftAddr, err := raftAddr(cfg.Dir)
	if err != nil {
		return nil, err
	}
	srv, err := startServer(ctx, cfg, raftAddr)
	if err != nil {
		return nil, err
	}
	n.Server = srv
	// The server's ports are never forwarded.
	agent.ReserveHostPorts(drivers, portOf(srv.Addr()), portOf(raftAddr))
	if err := n.connect(ctx); err != nil {
		srv.Shutdown(context.Background())
		return nil, err
	}
	if cfg.NoAgent {
		ok = true
		return n, nil
	}
	if err := n.startAgent(cfg, agentDir, drivers); err != nil {
		srv.Shutdown(context.Background())
		return nil, err
	}
	ok = true
	return n, nil
}

// prepareDir makes the data directory and tightens its permissions.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, raftstore.DirMode); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	// A directory made by an older kiln may be 0755: it holds the server's
	// state (bundles, token hashes, the management token).
	if err := raftstore.TightenIn(dir, LockFile, RaftPortFile); err != nil {
		return fmt.Errorf("embedded: permissions of %s: %w", dir, err)
	}
	return nil
}

// agentDrivers makes the drivers that cfg.Driver selects, keeping their
// state in agentDir; none with NoAgent. The memory driver is kept in
// n.Memory.
func (n *Node) agentDrivers(cfg Config, agentDir string) (agent.Drivers, error) {
	switch {
	case cfg.NoAgent:
		return nil, nil
	case cfg.Driver == DriverMemory:
		n.Memory = agent.NewMemory(agentDir, cfg.MemoryDelay)
		return n.Memory.Drivers(), nil
	case cfg.Driver == "":
		drivers, err := agent.RealDriversIn(agentDir, agent.StorageDir(agent.HostStorageDir), agent.RealOptions{
			Accel: cfg.Accel, Logger: cfg.Logger.With("role", "agent"),
			// A kiln command starts this agent every time: keep the probe's
			// answer until the host reboots or its QEMU or libvirt changes.
			AccelCache: filepath.Join(agentDir, "accel.json"),
			// Its templates are the user's own, run with the user's rights
			// on the user's host: local paths and loopback sources are
			// allowed (see agent.EmbeddedPolicy).
			Policy: agent.EmbeddedPolicy(),
		})
		if err != nil {
			return nil, fmt.Errorf("embedded agent: %w", err)
		}
		return drivers, nil
	default:
		return nil, fmt.Errorf("embedded: unknown driver %q", cfg.Driver)
	}
}

// startServer makes and starts the single-node server, bootstrapped, on a
// loopback HTTP port and raftAddr.
func startServer(ctx context.Context, cfg Config, raftAddr string) (*server.Server, error) {
	srv, err := server.New(server.Config{
		DataDir:   filepath.Join(cfg.Dir, ServerDir),
		HTTPAddr:  "127.0.0.1:0",
		RaftAddr:  raftAddr,
		NodeID:    "local",
		Bootstrap: true,
		Logger:    cfg.Logger.With("role", "server"),
		// One node: elect at once.
		HeartbeatTimeout:   200 * time.Millisecond,
		ElectionTimeout:    200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

// connect waits (up to 30s) until n.Server is ready and makes n.Client, a
// client of it with the management token.
func (n *Node) connect(ctx context.Context) error {
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	err := n.Server.WaitReady(rctx)
	rcancel()
	if err != nil {
		return err
	}
	n.Client, err = client.New(client.Config{Addr: n.Server.Addr(), Token: n.Server.ManagementToken()})
	return err
}

// startAgent makes the agent over drivers and runs it until Close.
func (n *Node) startAgent(cfg Config, agentDir string, drivers agent.Drivers) error {
	var err error
	n.Agent, err = agent.New(agent.Config{
		ID: AgentID, DataDir: agentDir, Client: n.Client, Drivers: drivers,
		HeartbeatInterval: time.Second, Wait: 10 * time.Second, Address: "embedded",
		CPURatio: cfg.CPURatio, MemoryRatio: cfg.MemoryRatio,
		Logger: cfg.Logger.With("role", "agent"),
	})
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.agentDone = make(chan error, 1)
	go func() { n.agentDone <- n.Agent.Run(actx) }()
	return nil
}

// Close stops the agent and the server and releases the directory.
func (n *Node) Close() error {
	if n.cancel != nil {
		n.cancel()
		<-n.agentDone
	}
	var err error
	if n.Server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = n.Server.Shutdown(ctx)
		cancel()
	}
	n.unlock()
	return err
}

func (n *Node) unlock() {
	if n.lock != nil {
		syscall.Flock(int(n.lock.Fd()), syscall.LOCK_UN)
		n.lock.Close()
		n.lock = nil
	}
}

// lockDir takes an exclusive flock on dir/lock and writes the pid in it.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		data, _ := os.ReadFile(p)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, PID: pid}
		}
		return nil, fmt.Errorf("embedded: lock %s: %w", p, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// raftAddr returns the loopback raft address of the node: the port used
// before when it is free (raft keeps the address in its configuration), a
// new ephemeral one otherwise.
func raftAddr(dir string) (string, error) {
	p := filepath.Join(dir, RaftPortFile)
	if data, err := os.ReadFile(p); err == nil {
		addr := "127.0.0.1:" + strings.TrimSpace(string(data))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("embedded: raft port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	if err := os.WriteFile(p, []byte(port+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("embedded: %w", err)
	}
	return addr, nil
}

// portOf is the port of a HOST:PORT address, 0 when it has none.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
