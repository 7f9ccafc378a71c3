package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/daemon/scheduler"
	"github.com/kiln-dev/kiln/planner"
)

const agentsUsage = `Usage: kiln agents [options]
       kiln agents revoke ID

  List the agents: id, address, up or down (and why), the accelerator its
  guests run with (kvm or tcg; - when unknown), capacity with the
  allocation ratios the scheduler fills it by (2 cpus ×16: 32 vCPUs), the
  host ports its port forwards may use (its -host-ports, "except" the
  ports of kiln itself in that range; - when the agent does not say, as the
  memory driver's), actions assigned and not finished, last heartbeat.
  A plan whose host_port no agent the stack can use allows is refused.

  revoke ID deletes the credentials of agent ID (global admin): it gets
  401 and no more work, its pending actions go to other agents, and only a
  global admin's registration takes it back (a join token cannot).

Options:
  -json              Print a JSON array of the API's AgentInfo, each with
                     "accel" and "accel_reason" also at the top level, and
                     "host_ports" (the HOST PORTS cell, "" when unknown).
` + serversUsage

func runAgents(e *Env, c *command, args []string) int {
	v := e.newVerb(c, serverOnly, flagJSON)
	pos, code, ok := v.parse(args, -1)
	if !ok {
		return code
	}
	if len(pos) > 0 && pos[0] == "revoke" {
		if !e.wantArgs(c, pos[1:], 1) {
			return ExitError
		}
		return v.with("agents revoke", func(r *remote) int {
			a, err := r.c.RevokeAgent(context.Background(), pos[1])
			return answered(v, "agents revoke", a, err, func(a api.AgentInfo) int {
				fmt.Fprintf(e.Stdout, "Agent %s revoked: its credentials no longer work and it gets no work.\n", a.ID)
				return ExitOK
			})
		})
	}
	if !e.wantArgs(c, pos, 0) {
		return ExitError
	}
	return v.with(c.name, func(r *remote) int {
		list, err := r.c.Agents(context.Background())
		if err != nil {
			return e.apiErr(c.name, err)
		}
		list = nonNil(list)
		if v.asJSON {
			out := make([]agentJSON, len(list))
			for i, a := range list {
				out[i] = agentJSON{AgentInfo: a, Accel: a.Capacity.Accel, AccelReason: a.Capacity.AccelReason}
				if a.Capacity.HostPortsKnown() {
					out[i].HostPorts = hostPortsCell(a.Capacity)
				}
			}
			return e.printJSON(out)
		}
		writeTable(e.Stdout, "ID\tADDRESS\tSTATUS\tACCEL\tCPUS\tMEMORY\tDISK\tHOST PORTS\tACTIONS\tLAST HEARTBEAT", list, func(a api.AgentInfo) string {
			st := a.Status
			if a.StatusReason != "" {
				st += " (" + a.StatusReason + ")"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s", a.ID, dash(a.Address), st, dash(a.Capacity.Accel),
				cpusCell(a.Capacity), memoryCell(a.Capacity), planner.FormatSize(a.Capacity.DiskBytes), hostPortsCell(a.Capacity), a.Actions,
				a.LastHeartbeat.Local().Format(time.DateTime))
		})
		return ExitOK
	})
}

// agentJSON is one agent of `kiln agents -json`: the API's AgentInfo with
// the accelerator also at the top level, where scripts look first.
type agentJSON struct {
	api.AgentInfo
	Accel       string `json:"accel"`
	AccelReason string `json:"accel_reason"`
	HostPorts   string `json:"host_ports"`
}

// hostPortsCell is "10000-60000", or "1024-32767 except 8775,20443" when
// ports of kiln itself lie in the range; "-" when the agent does not say.
func hostPortsCell(c api.Capacity) string {
	if !c.HostPortsKnown() {
		return "-"
	}
	cell := fmt.Sprintf("%d-%d", c.HostPortsLo, c.HostPortsHi)
	var in []string
	for _, p := range c.ReservedPorts {
		if p >= c.HostPortsLo && p <= c.HostPortsHi {
			in = append(in, strconv.Itoa(p))
		}
	}
	if len(in) > 0 {
		cell += " except " + strings.Join(in, ",")
	}
	return cell
}

// cpusCell is "2 cpus ×16": host CPUs and the ratio the scheduler counts
// them by (its default for an agent that does not say).
func cpusCell(c api.Capacity) string {
	r := c.CPURatio
	if r <= 0 {
		r = scheduler.DefaultCPURatio
	}
	unit := "cpus"
	if c.CPUs == 1 {
		unit = "cpu"
	}
	return fmt.Sprintf("%d %s ×%s", c.CPUs, unit, scheduler.FormatRatio(r))
}

// memoryCell is "16 GiB ×1.5": host memory and its ratio.
func memoryCell(c api.Capacity) string {
	r := c.MemoryRatio
	if r <= 0 {
		r = scheduler.DefaultMemoryRatio
	}
	return fmt.Sprintf("%s ×%s", planner.FormatSize(c.MemoryBytes), scheduler.FormatRatio(r))
}
