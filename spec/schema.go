package spec

// Schemas declares, per resource kind, its attributes: which are required,
// which are computed, which force a replacement when they change, and defaults.
// The planner reads ForceNew from here; the renderer reads Type ("size" values
// are int64 bytes rendered with units).
var Schemas = map[string]*KindSchema{
	KindImage: {Kind: KindImage, Attrs: []AttrSchema{
		{Name: "source", Type: "string", Required: true, ForceNew: true},
		{Name: "sha256", Type: "string", ForceNew: true},
		{Name: "format", Type: "string", ForceNew: true},
		{Name: "id", Type: "string", Computed: true},
		{Name: "size", Type: "size", Computed: true},
	}},
	KindNetwork: {Kind: KindNetwork, Attrs: []AttrSchema{
		{Name: "cidr", Type: "string", Required: true, ForceNew: true},
		{Name: "nat", Type: "bool", Default: false},
		{Name: "dhcp", Type: "bool", Default: true},
		{Name: "dns", Type: "list(string)"},
		{Name: "id", Type: "string", Computed: true},
		{Name: "gateway", Type: "string", Computed: true},
		{Name: "bridge", Type: "string", Computed: true},
	}},
	KindVolume: {Kind: KindVolume, Attrs: []AttrSchema{
		{Name: "size", Type: "size", Required: true},
		{Name: "format", Type: "string", Default: "qcow2", ForceNew: true},
		{Name: "id", Type: "string", Computed: true},
	}},
	KindServer: {Kind: KindServer, Attrs: []AttrSchema{
		{Name: "image", Type: "string", Required: true, ForceNew: true},
		{Name: "cpus", Type: "number", Default: int64(1)},
		// cpu_mode has no default: absent means the hypervisor's default. The
		// agent refuses a mode its accelerator cannot give at apply time.
		{Name: "cpu_mode", Type: "string"},
		{Name: "memory", Type: "size", Default: int64(512 << 20)},
		{Name: "disk", Type: "size", ForceNew: true},
		// networks holds the nested `network "NAME" { address = ... }` blocks.
		{Name: "networks", Type: "list(object)", ForceNew: true},
		// ready holds the nested `ready { ... }` block (see ready.go). A change
		// only checks readiness again, so it is an update.
		{Name: "ready", Type: "object"},
		{Name: "volumes", Type: "list(string)"},
		{Name: "user_data", Type: "string", ForceNew: true},
		{Name: "ssh_keys", Type: "list(string)", ForceNew: true},
		{Name: "kernel", Type: "string", ForceNew: true},
		{Name: "initrd", Type: "string", ForceNew: true},
		{Name: "cmdline", Type: "string", ForceNew: true},
		{Name: "id", Type: "string", Computed: true},
		{Name: "address", Type: "string", Computed: true},
		{Name: "addresses", Type: "map(string)", Computed: true},
		{Name: "mac", Type: "string", Computed: true},
	}},
	KindPortForward: {Kind: KindPortForward, Attrs: []AttrSchema{
		{Name: "host_port", Type: "number", Required: true, ForceNew: true},
		{Name: "protocol", Type: "string", Default: "tcp", ForceNew: true},
		{Name: "target", Type: "string", Required: true, ForceNew: true},
		{Name: "target_port", Type: "number", Required: true, ForceNew: true},
		{Name: "id", Type: "string", Computed: true},
	}},
}
