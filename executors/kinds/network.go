package kinds

// NetworkAttrs are a network's configured attributes. Its id is its
// bridge's name (BridgeName).
type NetworkAttrs struct {
	CIDR string   `attr:"cidr,required"`
	NAT  bool     `attr:"nat" default:"false"`
	DHCP bool     `attr:"dhcp" default:"true"`
	DNS  []string `attr:"dns"`
}
