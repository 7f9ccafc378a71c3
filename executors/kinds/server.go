package kinds

import "fmt"

// ServerAttrs are a server's configured attributes, in the order the agent
// has always checked them (the first error is the one reported). Its id is
// its domain's name (ServerName).
type ServerAttrs struct {
	Image    string   `attr:"image,required"`
	CPUs     int64    `attr:"cpus" default:"1"`
	Memory   int64    `attr:"memory" default:"536870912"`
	Disk     int64    `attr:"disk"`
	UserData string   `attr:"user_data"`
	Kernel   string   `attr:"kernel"`
	Initrd   string   `attr:"initrd"`
	Cmdline  string   `attr:"cmdline"`
	SSHKeys  []string `attr:"ssh_keys"`
	CPUMode  string   `attr:"cpu_mode"`
	Volumes  []string `attr:"volumes"`
	// Networks are the `network "NAME" { address = ... }` blocks.
	Networks NetworkBlocks `attr:"networks"`
	// Ready is nil without a ready block.
	Ready *ReadyBlock `attr:"ready"`
}

// NetworkBlock is one `network "NAME" { address = ... }` block of a
// server.
type NetworkBlock struct {
	Name    string
	Address string // "" to be given one
}

// NetworkBlocks are a server's network blocks, in order.
type NetworkBlocks []NetworkBlock

func (n *NetworkBlocks) decodeAttr(d Decoder, name string, v any) error {
	if d.Unknown(v) {
		if _, list := v.([]any); !list {
			return d.UnknownError(name)
		}
	}
	l, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%s: attribute %q is a %T, want a list of network blocks", d.Address, name, v)
	}
	var out NetworkBlocks
	for i, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %s[%d] is a %T, want a network block", d.Address, name, i, e)
		}
		net, _ := m["name"].(string)
		if net == "" {
			return fmt.Errorf("%s: %s[%d] has no name", d.Address, name, i)
		}
		b := NetworkBlock{Name: net}
		switch x := m["address"].(type) {
		case nil:
		case string:
			b.Address = x
		default:
			if d.Unknown(x) {
				return d.UnknownError(fmt.Sprintf("network %q address", net))
			}
			return fmt.Errorf("%s: network %q address is a %T, want a string", d.Address, net, x)
		}
		out = append(out, b)
	}
	*n = out
	return nil
}

// ReadyBlock is a server's `ready { ... }` block as spec normalises it:
// one check (the first set of TCPPort, HTTPPort, Console, Signal) and a
// timeout in seconds (0 for the driver's default).
type ReadyBlock struct {
	Timeout  int64
	TCPPort  *int64
	HTTPPort *int64
	HTTPPath string
	Console  *string
	Signal   bool
}

func (r *ReadyBlock) decodeAttr(d Decoder, name string, v any) error {
	if d.Unknown(v) {
		return d.UnknownError(name)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: attribute %q is a %T, want a ready block", d.Address, name, v)
	}
	if t, ok := asInt64(m["timeout"]); ok {
		r.Timeout = t
	}
	if m["tcp_port"] != nil {
		p, _ := asInt64(m["tcp_port"])
		r.TCPPort = &p
	}
	if m["http_port"] != nil {
		p, _ := asInt64(m["http_port"])
		r.HTTPPort = &p
	}
	r.HTTPPath, _ = m["http_path"].(string)
	if m["console"] != nil {
		c, _ := m["console"].(string)
		r.Console = &c
	}
	r.Signal = m["signal"] == true
	return nil
}

// asInt64 is a whole number, as the ready block's numbers are read.
func asInt64(v any) (int64, bool) {
	n, whole, ok := number(v)
	return n, ok && whole
}
