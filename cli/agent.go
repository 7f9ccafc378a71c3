package cli

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/scheduler"
)

const agentUsage = `Usage: kiln agent -data-dir DIR -servers HOST:PORT,... [options]

  Run an agent: it registers with the servers, heartbeats with this host's
  capacity and cached images, waits for the actions assigned to it and runs
  them through the executors (libvirt, bridges, iptables, dnsmasq, the image
  cache), reporting each result. When the leader changes it talks to the
  next server by itself. SIGINT or SIGTERM stops it after the actions in
  progress.

  At its first start -token (or KILN_TOKEN) is a global admin token (the
  management token) or a join token (kiln token create -join): the agent
  registers with it and is issued a credential of its own, bound to its
  id, which it keeps in DIR/agent-credential (mode 0600) and uses from then
  on, also after a restart (a stored credential wins over -token and
  KILN_TOKEN). The credential can only fetch and report this agent's own
  work. Revoked (kiln agents revoke ID), the agent gets 401 and stops; to
  take it back a global admin removes DIR/agent-credential and starts it
  with a global admin token.

Options:
  -data-dir DIR         Data directory (required); the agent's id is kept
                        in DIR/agent-id.
  -servers A,B,C        The servers' HTTP addresses (default KILN_ADDR).
  -id ID                The agent's id (default: the one in DIR/agent-id,
                        made from the host name at the first start).
  -token T              The token to register with the first time: a global
                        admin or join token (default KILN_TOKEN). A stored
                        DIR/agent-credential wins.
  -heartbeat DURATION   Heartbeat interval (default 5s).
  -accel MODE           auto, kvm or tcg (default auto). auto runs guests
                        under KVM only when a probe guest runs under it on
                        this host, else under TCG, and logs why; kvm makes a
                        host where KVM cannot run a guest an error at start.
` + ratioUsage + policyUsage + `  -log-level LEVEL      debug, info, warn or error (default info).
`

// ratioUsage documents the allocation ratio flags of an agent.
const ratioUsage = `  -cpu-ratio N          Guest vCPUs one host CPU counts for when the
                        scheduler fills this host (default 16, at most 1000).
  -memory-ratio N       Bytes of guest memory one byte of host memory counts
                        for (default 1, at most 100). Disk is never
                        overcommitted.
`

// ratioFlags are the allocation ratios an agent reports with its capacity.
type ratioFlags struct {
	cpu, memory float64
}

func (r *ratioFlags) register(fs *flag.FlagSet) {
	fs.Float64Var(&r.cpu, "cpu-ratio", scheduler.DefaultCPURatio, "")
	fs.Float64Var(&r.memory, "memory-ratio", scheduler.DefaultMemoryRatio, "")
}

// check says which flag is out of bounds.
func (r ratioFlags) check() error {
	if err := api.CheckRatio("-cpu-ratio", r.cpu, api.MaxCPURatio); err != nil {
		return err
	}
	return api.CheckRatio("-memory-ratio", r.memory, api.MaxMemoryRatio)
}

func runAgent(e *Env, c *command, args []string) int {
	v := e.newVerb(c, offline, 0)
	fs := v.flags
	dataDir := fs.String("data-dir", "", "")
	servers := fs.String("servers", "", "")
	id := fs.String("id", "", "")
	token := fs.String("token", "", "")
	hb := fs.Duration("heartbeat", agent.DefaultHeartbeatInterval, "")
	accelMode := fs.String("accel", "auto", "")
	var ratios ratioFlags
	ratios.register(fs)
	var policy policyFlags
	policy.register(fs)
	logLevel := fs.String("log-level", "info", "")
	// Test-only: -driver=memory runs the in-memory driver, which writes its
	// calls to DIR/memdriver-calls.jsonl; -memory-delay slows it.
	driver := fs.String("driver", "", "")
	memDelay := fs.Duration("memory-delay", 0, "")
	_, code, ok := v.parse(args, 0)
	if !ok {
		return code
	}
	if *servers == "" {
		*servers = e.getenv(envAddr)
	}
	if *dataDir == "" || *servers == "" {
		fmt.Fprintf(e.Stderr, "kiln agent: -data-dir and -servers (or KILN_ADDR) are required\n\n%s", c.usage)
		return ExitError
	}
	if err := ratios.check(); err != nil {
		return e.fail("agent", err)
	}
	hostPolicy, err := policy.policy()
	if err != nil {
		return e.fail("agent", err)
	}
	// The servers' API ports are never forwarded (they may be on this
	// host).
	hostPolicy.ReservedPorts = portsOf(strings.Split(*servers, ",")...)
	log, err := e.logger(*logLevel)
	if err != nil {
		return e.fail("agent", err)
	}
	dir := e.abs(*dataDir)
	if *token == "" {
		*token = e.getenv(envToken)
	}
	if _, err := os.Stat(filepath.Join(dir, agent.CredentialFile)); *token == "" && err != nil {
		fmt.Fprintf(e.Stderr, "kiln agent: no token to register with: set -token or KILN_TOKEN to a global admin or join token (kiln token create -join), or keep the credential in %s\n", filepath.Join(dir, agent.CredentialFile))
		return ExitError
	}
	drivers, err := agentDrivers(dir, *driver, *memDelay, agent.RealOptions{Accel: *accelMode, Logger: log, Policy: hostPolicy})
	if err != nil {
		return e.fail("agent", err)
	}
	a, err := agent.New(agent.Config{
		ID: *id, DataDir: dir, Servers: strings.Split(*servers, ","), Token: *token,
		Drivers: drivers, HeartbeatInterval: *hb, CPURatio: ratios.cpu, MemoryRatio: ratios.memory, Logger: log,
	})
	if err != nil {
		return e.fail("agent", err)
	}
	ctx, stop := interruptible()
	defer stop()
	log.Info("kiln agent running", "id", a.ID(), "servers", *servers)
	if err := a.Run(ctx); err != nil {
		return e.fail("agent", err)
	}
	return ExitOK
}
