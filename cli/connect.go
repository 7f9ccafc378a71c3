package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
	"github.com/kiln-dev/kiln/daemon/agent"
	"github.com/kiln-dev/kiln/daemon/embedded"
	"github.com/kiln-dev/kiln/daemon/scheduler"
)

// Environment variables of the client verbs.
const (
	envAddr  = "KILN_ADDR"  // comma-separated server HTTP addresses
	envToken = "KILN_TOKEN" // the token sent to them
	// envEmbeddedDriver=memory makes the embedded agent use the in-memory
	// driver. Test-only: nothing real is made.
	envEmbeddedDriver = "KILN_EMBEDDED_DRIVER"
	// envEmbeddedDelay slows the embedded memory driver's actions (tests).
	envEmbeddedDelay = "KILN_EMBEDDED_DELAY"
	// envCPURatio and envMemoryRatio are the allocation ratios of the
	// embedded agent (kiln agent's -cpu-ratio and -memory-ratio).
	envCPURatio    = "KILN_CPU_RATIO"
	envMemoryRatio = "KILN_MEMORY_RATIO"
)

// embeddedRatios returns the embedded agent's allocation ratios from
// KILN_CPU_RATIO and KILN_MEMORY_RATIO, the defaults for those not set.
func (e *Env) embeddedRatios() (cpu, memory float64, err error) {
	get := func(name string, def, max float64) (float64, error) {
		v := e.getenv(name)
		if v == "" {
			return def, nil
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, fmt.Errorf("%s %q: want a number above 0 and at most %s", name, v, scheduler.FormatRatio(max))
		}
		return r, api.CheckRatio(name, r, max)
	}
	if cpu, err = get(envCPURatio, scheduler.DefaultCPURatio, api.MaxCPURatio); err != nil {
		return 0, 0, err
	}
	memory, err = get(envMemoryRatio, scheduler.DefaultMemoryRatio, api.MaxMemoryRatio)
	return cpu, memory, err
}

// embeddedDir is the data directory of the embedded default, under the
// working directory.
const embeddedDir = ".kiln"

// serverFlags are the flags every verb that talks to the daemon takes.
type serverFlags struct {
	servers string
}

func (s *serverFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.servers, "servers", "", "")
}

const serversUsage = `  -servers A,B,C     Servers to talk to (HTTP host:port, comma-separated).
                     Default: KILN_ADDR; with neither, kiln runs a one-node
                     server and agent in this process on ./.kiln/.
`

// remote is a connection to the daemon: a client, and the embedded node
// when kiln runs one in-process.
type remote struct {
	c    *client.Client
	node *embedded.Node
}

func (r *remote) embedded() bool { return r.node != nil }

func (r *remote) close() {
	if r.node != nil {
		r.node.Close()
	}
}

// connect returns a client for the servers named by -servers or KILN_ADDR,
// or starts the embedded default. It prints the error and returns nil when
// it cannot.
func (e *Env) connect(cmd string, s *serverFlags) *remote {
	return e.dial(cmd, s, false)
}

// remoteAddr returns the servers named by -servers or KILN_ADDR, "" for
// the embedded default.
func (e *Env) remoteAddr(s *serverFlags) string {
	if s.servers != "" {
		return s.servers
	}
	return e.getenv(envAddr)
}

func (e *Env) dial(cmd string, s *serverFlags, withAgent bool) *remote {
	if addr := e.remoteAddr(s); addr != "" {
		c, err := client.New(client.Config{Addr: addr, Token: e.getenv(envToken)})
		if err != nil {
			fmt.Fprintf(e.Stderr, "kiln %s: %v\n", cmd, err)
			return nil
		}
		return &remote{c: c}
	}
	cpuRatio, memRatio, err := e.embeddedRatios()
	if err != nil {
		fmt.Fprintf(e.Stderr, "kiln %s: %v\n", cmd, err)
		return nil
	}
	cfg := embedded.Config{Dir: filepath.Join(e.Dir, embeddedDir), Driver: e.getenv(envEmbeddedDriver), NoAgent: !withAgent,
		CPURatio: cpuRatio, MemoryRatio: memRatio, Accel: e.getenv(agent.AccelEnv)}
	if d := e.getenv(envEmbeddedDelay); d != "" {
		cfg.MemoryDelay, _ = time.ParseDuration(d)
	}
	n, err := embedded.Start(context.Background(), cfg)
	if err != nil {
		var le *embedded.LockedError
		if errors.As(err, &le) {
			fmt.Fprintf(e.Stderr, "kiln %s: another kiln is using ./%s (pid %d); wait for it to finish, or set KILN_ADDR to use a server\n", cmd, embeddedDir, le.PID)
			return nil
		}
		fmt.Fprintf(e.Stderr, "kiln %s: embedded server in ./%s: %v\n", cmd, embeddedDir, err)
		return nil
	}
	r := &remote{c: n.Client, node: n}
	// A new embedded leader may find the previous run's agent down (its
	// last heartbeat is old) before this run's agent has registered: wait
	// for it, so that no action is placed on an agent still marked down.
	if withAgent && !e.waitEmbeddedAgent(context.Background(), r, cmd) {
		r.close()
		return nil
	}
	return r
}

// apiErr prints an error from the daemon in one line.
func (e *Env) apiErr(cmd string, err error) int {
	msg := err.Error()
	switch client.StatusCode(err) {
	case 401:
		msg += "; set KILN_TOKEN to a valid token"
	case 403:
		msg += "; the token's role does not allow this"
	}
	fmt.Fprintf(e.Stderr, "kiln %s: %s\n", cmd, msg)
	return ExitError
}

// printJSON writes v as one indented JSON document.
func (e *Env) printJSON(v any) int {
	enc := json.NewEncoder(e.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(e.Stderr, "kiln: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// formatValue renders an output value on one line for humans.
func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// printOutputs prints outputs as "name = value" lines, sorted.
func (e *Env) printOutputs(outs map[string]api.OutputValue) {
	if len(outs) == 0 {
		return
	}
	fmt.Fprintln(e.Stdout, "\nOutputs:")
	for _, k := range sortedKeys(outs) {
		o := outs[k]
		v := formatValue(o.Value)
		if o.Sensitive && o.Value == nil {
			v = "(sensitive)"
		}
		fmt.Fprintf(e.Stdout, "  %s = %s\n", k, v)
	}
}

// stdinTerminal reports whether stdin is a terminal a human can answer on.
func (e *Env) stdinTerminal() bool {
	if e.Terminal == nil {
		return false
	}
	f, ok := e.Stdin.(*os.File)
	return ok && e.Terminal(f)
}

// confirm asks a yes/no question on the terminal.
func (e *Env) confirm(question string) bool {
	fmt.Fprintf(e.Stdout, "\n%s\n  Only 'yes' is accepted: ", question)
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := e.Stdin.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			break
		}
	}
	return strings.TrimSpace(b.String()) == "yes"
}
