package kinds

// PortForwardAttrs are a port forward's configured attributes. Its id is
// PortForwardID. An empty Protocol is tcp.
type PortForwardAttrs struct {
	HostPort   int64  `attr:"host_port"`
	TargetPort int64  `attr:"target_port"`
	Protocol   string `attr:"protocol"`
	Target     string `attr:"target,required"`
}
