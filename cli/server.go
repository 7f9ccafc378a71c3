package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/server"
)

const serverUsage = `Usage: kiln server -data-dir DIR -raft-addr HOST:PORT [options]

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
  -parallelism N        Actions an operation runs at once (default 64; at most 8
                       servers and 4 images of them).
  -eval-timeout D       Longest evaluation of one template (default 10s).
  -max-plans N          Templates evaluated at once; more wait 2s, then get
                        429 with Retry-After (default 4).
  -max-connections N    API connections served at once; more wait in the
                        listen queue (default 1024).
  -leave-on-shutdown    Leave the cluster on SIGINT/SIGTERM (default true).
  -log-level LEVEL      debug, info, warn or error (default info).
  -recover              Start a single server whose raft log was lost from
                        its newest snapshot, accepting the loss of the
                        writes after it (see "Damaged data" in
                        docs/operations.md; never on a cluster member).
`

// serverOptions are the options of kiln server.
type serverOptions struct {
	dataDir, httpAddr, raftAddr, join string
	bootstrap, withAgent, recoverLog  bool
	accelMode                         string
	ratios                            ratioFlags
	policy                            policyFlags
	parallelism, maxPlans, maxConns   int
	evalTimeout                       time.Duration
	leave                             bool
	logLevel                          string
	// Test-only: the in-memory driver for the -agent (never a default).
	driver   string
	memDelay time.Duration
}

func (f *serverOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "", "")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:4646", "")
	fs.StringVar(&f.raftAddr, "raft-addr", "", "")
	fs.BoolVar(&f.bootstrap, "bootstrap", false, "")
	fs.StringVar(&f.join, "join", "", "")
	fs.BoolVar(&f.withAgent, "agent", false, "")
	fs.BoolVar(&f.recoverLog, "recover", false, "")
	fs.StringVar(&f.accelMode, "accel", "auto", "")
	f.ratios.register(fs)
	f.policy.register(fs)
	fs.IntVar(&f.parallelism, "parallelism", 64, "")
	fs.DurationVar(&f.evalTimeout, "eval-timeout", 10*time.Second, "")
	fs.IntVar(&f.maxPlans, "max-plans", 4, "")
	fs.IntVar(&f.maxConns, "max-connections", 1024, "")
	fs.BoolVar(&f.leave, "leave-on-shutdown", true, "")
	fs.StringVar(&f.logLevel, "log-level", "info", "")
	fs.StringVar(&f.driver, "agent-driver", "", "")
	fs.DurationVar(&f.memDelay, "memory-delay", 0, "")
}

func runServer(e *Env, c *command, args []string) int {
	v := e.newVerb(c, offline, 0)
	var f serverOptions
	f.register(v.flags)
	_, code, ok := v.parse(args, 0)
	if !ok {
		return code
	}
	if !f.valid(e, c, v.flags) {
		return ExitError
	}
	dir := e.abs(f.dataDir)
	log, err := e.logger(f.logLevel)
	if err != nil {
		return e.fail("server", err)
	}
	var drivers agent.Drivers
	if f.withAgent {
		drivers, err = f.agentDrivers(dir, log)
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln server: -agent: %v\n", err)
			return ExitError
		}
	}
	srv, err := server.New(f.serverConfig(dir, log, e.getenv(envToken)))
	if err != nil {
		return e.fail("server", err)
	}
	ctx, stop := interruptible()
	defer stop()
	if err := srv.Start(ctx); err != nil {
		return e.fail("server", err)
	}
	log.Info("kiln server running", "http", srv.Addr(), "raft", f.raftAddr, "node", srv.NodeID())
	agentDone := make(chan error, 1)
	if f.withAgent {
		if err := f.startAgent(ctx, e, srv, dir, drivers, log, agentDone); err != nil {
			fmt.Fprintf(e.Stderr, "kiln server: agent: %v\n", err)
			srv.Shutdown(context.Background())
			return ExitError
		}
	} else {
		agentDone <- nil
	}
	<-ctx.Done()
	return shutdownServer(e, log, srv, agentDone)
}

// valid says whether the options can run a server, and if not writes why
// to e.Stderr.
func (f *serverOptions) valid(e *Env, c *command, fs *flag.FlagSet) bool {
	if f.evalTimeout <= 0 || f.maxPlans <= 0 || f.maxConns <= 0 {
		fmt.Fprintf(e.Stderr, "kiln server: -eval-timeout, -max-plans and -max-connections must be above 0\n")
		return false
	}
	if f.dataDir == "" || f.raftAddr == "" {
		fmt.Fprintf(e.Stderr, "kiln server: -data-dir and -raft-addr are required\n\n%s", c.usage)
		return false
	}
	if f.bootstrap && f.join != "" {
		fmt.Fprintf(e.Stderr, "kiln server: -bootstrap and -join exclude each other\n")
		return false
	}
	if !f.withAgent {
		if msg := agentOnlyFlags(fs); msg != "" {
			fmt.Fprintf(e.Stderr, "kiln server: %s\n", msg)
			return false
		}
	} else if err := f.ratios.check(); err != nil {
		fmt.Fprintf(e.Stderr, "kiln server: -agent: %v\n", err)
		return false
	}
	return true
}

// agentOnlyFlags says which of the flags set on fs only an -agent takes,
// and why; "" when there are none.
func agentOnlyFlags(fs *flag.FlagSet) string {
	var agentOnly []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "cpu-ratio" || f.Name == "memory-ratio" || slices.Contains(policyFlagNames, f.Name) {
			agentOnly = append(agentOnly, "-"+f.Name)
		}
	})
	if len(agentOnly) == 0 {
		return ""
	}
	need := "needs"
	if len(agentOnly) > 1 {
		need = "need"
	}
	why := "the allocation ratios are the agent's"
	if slices.Contains(policyFlagNames, agentOnly[0][1:]) {
		why = "the host policy is the agent's"
	}
	return fmt.Sprintf("%s %s -agent (%s)", strings.Join(agentOnly, " and "), need, why)
}

// agentDrivers makes the drivers of the -agent, with its data in
// dir/agent, under the host policy of the flags.
func (f *serverOptions) agentDrivers(dir string, log *slog.Logger) (agent.Drivers, error) {
	hostPolicy, err := f.policy.policy()
	if err != nil {
		return nil, err
	}
	// The server's ports are never forwarded (the HTTP port again
	// once it listens, in case it was :0).
	hostPolicy.ReservedPorts = portsOf(f.httpAddr, f.raftAddr)
	return agentDrivers(filepath.Join(dir, "agent"), f.driver, f.memDelay, agent.RealOptions{Accel: f.accelMode, Logger: log.With("role", "agent"), Policy: hostPolicy})
}

// serverConfig is the server's configuration from the flags; joinToken is
// the token -join presents.
func (f *serverOptions) serverConfig(dir string, log *slog.Logger, joinToken string) server.Config {
	return server.Config{
		DataDir: dir, HTTPAddr: f.httpAddr, RaftAddr: f.raftAddr, Bootstrap: f.bootstrap,
		Join: f.join, JoinToken: joinToken, Parallelism: f.parallelism,
		LeaveOnShutdown: f.leave, Logger: log, Recover: f.recoverLog,
		EvalTimeout: f.evalTimeout, MaxConcurrentPlans: f.maxPlans, MaxConnections: f.maxConns,
	}
}

// startAgent runs the -agent over drivers against srv, with the management
// token (KILN_TOKEN on a server that has none), until ctx is done; its
// result goes to done.
func (f *serverOptions) startAgent(ctx context.Context, e *Env, srv *server.Server, dir string, drivers agent.Drivers, log *slog.Logger, done chan<- error) error {
	agent.ReserveHostPorts(drivers, portsOf(srv.Addr())...)
	tok := srv.ManagementToken()
	if tok == "" {
		tok = e.getenv(envToken)
	}
	cl, err := client.New(client.Config{Addr: srv.Addr(), Token: tok})
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{DataDir: filepath.Join(dir, "agent"), Client: cl, Drivers: drivers,
		CPURatio: f.ratios.cpu, MemoryRatio: f.ratios.memory, Logger: log.With("role", "agent")})
	if err != nil {
		return err
	}
	go func() { done <- a.Run(ctx) }()
	return nil
}

// shutdownServer waits for the agent (if any) to stop and shuts srv down,
// within 30s.
func shutdownServer(e *Env, log *slog.Logger, srv *server.Server, agentDone <-chan error) int {
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
func (e *Env) abs(p string) string { return resolve(e.Dir, p) }

// resolve is p, or p joined to dir when p is relative.
func resolve(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
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
