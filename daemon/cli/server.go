package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/client"
	"github.com/kiln-dev/kiln/daemon/server"
)

var serverCommand = &command{
	name:     "server",
	synopsis: "Run a kiln server (a raft voter serving the API)",
	usage: `Usage: kiln server -data-dir DIR -raft-addr HOST:PORT [options]

  Run a server: it holds the state in a raft log under DIR, serves the HTTP
  API, and while it is the leader drives operations and places work on
  agents. Start the first server with -bootstrap (it writes the management
  token to DIR/management.token, mode 0600), the others with -join and
  KILN_TOKEN set to an admin or the management token. SIGINT or SIGTERM
  stops the server; it leaves the cluster first (unless it is the last).

Options:
  -data-dir DIR         Data directory (required).
  -http-addr HOST:PORT  API address (default 127.0.0.1:4646).
  -raft-addr HOST:PORT  Raft address (required).
  -bootstrap            Make a new one-server cluster at the first start.
  -join HOST:PORT       The HTTP address of a member to join through.
  -agent                Also run an agent in this process (the executors of
                        this host), with its data in DIR/agent.
  -accel MODE           With -agent: auto, kvm or tcg (default auto: KVM
                        only when a probe guest runs under it here).
  -cpu-ratio N          With -agent: guest vCPUs one host CPU counts for
                        (default 16, at most 1000).
  -memory-ratio N       With -agent: bytes of guest memory one byte of host
                        memory counts for (default 1, at most 100).
  -allow-local-images, -allow-insecure-http, -allow-local-sources,
  -host-ports           With -agent: what templates may make the agent do
                        on this host, as for kiln agent; the server's own
                        HTTP and raft ports are never forwarded.
  -parallelism N        Actions an operation runs at once (default 16).
  -eval-timeout D       Longest evaluation of one template (default 10s).
  -max-plans N          Templates evaluated at once; more wait 2s, then get
                        429 with Retry-After (default 4).
  -max-connections N    API connections served at once; more wait in the
                        listen queue (default 1024).
  -leave-on-shutdown    Leave the cluster on SIGINT/SIGTERM (default true).
  -log-level LEVEL      debug, info, warn or error (default info).
  -recover              Start a single server whose raft.db was lost from
                        its newest snapshot, accepting the loss of the
                        writes after it (see "Damaged data" in
                        docs/operations.md; never on a cluster member).
`,
	run: runServer,
}

func runServer(e *Env, c *command, args []string) int {
	fs := newFlagSet(c.name)
	dataDir := fs.String("data-dir", "", "")
	httpAddr := fs.String("http-addr", "127.0.0.1:4646", "")
	raftAddr := fs.String("raft-addr", "", "")
	bootstrap := fs.Bool("bootstrap", false, "")
	join := fs.String("join", "", "")
	withAgent := fs.Bool("agent", false, "")
	recoverLog := fs.Bool("recover", false, "")
	accelMode := fs.String("accel", "auto", "")
	var ratios ratioFlags
	ratios.register(fs)
	var policy policyFlags
	policy.register(fs)
	parallelism := fs.Int("parallelism", 16, "")
	evalTimeout := fs.Duration("eval-timeout", 10*time.Second, "")
	maxPlans := fs.Int("max-plans", 4, "")
	maxConns := fs.Int("max-connections", 1024, "")
	leave := fs.Bool("leave-on-shutdown", true, "")
	logLevel := fs.String("log-level", "info", "")
	// Test-only: the in-memory driver for the -agent (never a default).
	driver := fs.String("agent-driver", "", "")
	memDelay := fs.Duration("memory-delay", 0, "")
	pos, code, ok := e.parseArgs(c, fs, args)
	if !ok {
		return code
	}
	if !e.wantArgs(c, pos, 0) {
		return ExitError
	}
	if *evalTimeout <= 0 || *maxPlans <= 0 || *maxConns <= 0 {
		fmt.Fprintf(e.Stderr, "kiln server: -eval-timeout, -max-plans and -max-connections must be above 0\n")
		return ExitError
	}
	if *dataDir == "" || *raftAddr == "" {
		fmt.Fprintf(e.Stderr, "kiln server: -data-dir and -raft-addr are required\n\n%s", c.usage)
		return ExitError
	}
	if *bootstrap && *join != "" {
		fmt.Fprintf(e.Stderr, "kiln server: -bootstrap and -join exclude each other\n")
		return ExitError
	}
	if !*withAgent {
		var agentOnly []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "cpu-ratio" || f.Name == "memory-ratio" || slices.Contains(policyFlagNames, f.Name) {
				agentOnly = append(agentOnly, "-"+f.Name)
			}
		})
		if len(agentOnly) > 0 {
			need := "needs"
			if len(agentOnly) > 1 {
				need = "need"
			}
			why := "the allocation ratios are the agent's"
			if slices.Contains(policyFlagNames, agentOnly[0][1:]) {
				why = "the host policy is the agent's"
			}
			fmt.Fprintf(e.Stderr, "kiln server: %s %s -agent (%s)\n", strings.Join(agentOnly, " and "), need, why)
			return ExitError
		}
	} else if err := ratios.check(); err != nil {
		fmt.Fprintf(e.Stderr, "kiln server: -agent: %v\n", err)
		return ExitError
	}
	dir := e.abs(*dataDir)
	log, err := e.logger(*logLevel)
	if err != nil {
		fmt.Fprintf(e.Stderr, "kiln server: %v\n", err)
		return ExitError
	}
	var drivers agent.Drivers
	if *withAgent {
		hostPolicy, err := policy.policy()
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln server: -agent: %v\n", err)
			return ExitError
		}
		// The server's ports are never forwarded (the HTTP port again
		// once it listens, in case it was :0).
		hostPolicy.ReservedPorts = portsOf(*httpAddr, *raftAddr)
		drivers, err = agentDrivers(filepath.Join(dir, "agent"), *driver, *memDelay, agent.RealOptions{Accel: *accelMode, Logger: log.With("role", "agent"), Policy: hostPolicy})
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln server: -agent: %v\n", err)
			return ExitError
		}
	}
	srv, err := server.New(server.Config{
		DataDir: dir, HTTPAddr: *httpAddr, RaftAddr: *raftAddr, Bootstrap: *bootstrap,
		Join: *join, JoinToken: e.getenv(envToken), Parallelism: *parallelism,
		LeaveOnShutdown: *leave, Logger: log, Recover: *recoverLog,
		EvalTimeout: *evalTimeout, MaxConcurrentPlans: *maxPlans, MaxConnections: *maxConns,
	})
	if err != nil {
		fmt.Fprintf(e.Stderr, "kiln server: %v\n", err)
		return ExitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintf(e.Stderr, "kiln server: %v\n", err)
		return ExitError
	}
	log.Info("kiln server running", "http", srv.Addr(), "raft", *raftAddr, "node", srv.NodeID())
	agentDone := make(chan error, 1)
	if *withAgent {
		agent.ReserveHostPorts(drivers, portsOf(srv.Addr())...)
		tok := srv.ManagementToken()
		if tok == "" {
			tok = e.getenv(envToken)
		}
		cl, err := client.New(client.Config{Addr: srv.Addr(), Token: tok})
		if err == nil {
			var a *agent.Agent
			a, err = agent.New(agent.Config{DataDir: filepath.Join(dir, "agent"), Client: cl, Drivers: drivers,
				CPURatio: ratios.cpu, MemoryRatio: ratios.memory, Logger: log.With("role", "agent")})
			if err == nil {
				go func() { agentDone <- a.Run(ctx) }()
			}
		}
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln server: agent: %v\n", err)
			srv.Shutdown(context.Background())
			return ExitError
		}
	} else {
		agentDone <- nil
	}
	<-ctx.Done()
	log.Info("shutting down")
	if err := <-agentDone; err != nil {
		log.Error("agent", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		fmt.Fprintf(e.Stderr, "kiln server: shutdown: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// abs resolves p against the working directory.
func (e *Env) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(e.Dir, p)
}

// logger is a text logger on stderr at the given level.
func (e *Env) logger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(e.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// agentDrivers returns the real drivers, or the memory driver when asked
// for explicitly (tests).
func agentDrivers(dir, driver string, delay time.Duration, o agent.RealOptions) (agent.Drivers, error) {
	switch driver {
	case "", "real":
		return agent.RealDrivers(dir, o)
	case "memory":
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		return agent.NewMemory(dir, delay).Drivers(), nil
	}
	return nil, fmt.Errorf("unknown driver %q", driver)
}
