package cli

import (
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/daemon/agent"
)

// policyUsage documents the host policy flags of an agent.
const policyUsage = `  -allow-local-images DIR[,DIR]
                        Directories the local paths of templates (image
                        source, server kernel and initrd) may lie under,
                        symbolic links resolved; repeatable. Default none:
                        templates cannot make the agent read host files.
  -allow-insecure-http  Fetch http:// image sources that have no sha256.
  -allow-local-sources  Fetch image sources on loopback, link-local (cloud
                        metadata) and this host's own addresses.
  -host-ports LO-HI     Host ports port forwards may use (default
                        10000-60000); kiln's own ports (the ready-signal
                        port, the servers' API ports) are never used.
`

// policyFlagNames are the flags of policyFlags, without the dash.
var policyFlagNames = []string{"allow-local-images", "allow-insecure-http", "allow-local-sources", "host-ports"}

// policyFlags are what an agent lets templates do on its host.
type policyFlags struct {
	localImages  dirList
	insecureHTTP bool
	localSources bool
	hostPorts    string
}

type dirList []string

func (d *dirList) String() string { return strings.Join(*d, ",") }

func (d *dirList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*d = append(*d, s)
		}
	}
	return nil
}

func (p *policyFlags) register(fs *flag.FlagSet) {
	fs.Var(&p.localImages, "allow-local-images", "")
	fs.BoolVar(&p.insecureHTTP, "allow-insecure-http", false, "")
	fs.BoolVar(&p.localSources, "allow-local-sources", false, "")
	fs.StringVar(&p.hostPorts, "host-ports", agent.DefaultHostPorts.String(), "")
}

// policy is the host policy the flags give, or the flag that is wrong.
func (p policyFlags) policy() (agent.HostPolicy, error) {
	rng, err := agent.ParsePortRange(p.hostPorts)
	if err != nil {
		return agent.HostPolicy{}, fmt.Errorf("-host-ports: %w", err)
	}
	hp := agent.HostPolicy{AllowLocalImages: p.localImages, AllowInsecureHTTP: p.insecureHTTP, AllowLocalSources: p.localSources, HostPorts: rng}
	return hp, hp.Check()
}

// portsOf returns the ports of HOST:PORT addresses (those that have one).
func portsOf(addrs ...string) []int {
	var out []int
	for _, a := range addrs {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 {
				out = append(out, n)
			}
		}
	}
	return out
}
