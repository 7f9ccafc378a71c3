// Package cloudinit makes the cloud-init NoCloud seed that a kiln server boots
// with: an ISO 9660 image labelled "cidata" holding meta-data (instance-id,
// hostname, ssh keys), user-data and network-config (version 2, a static
// address on the NIC matched by MAC, or DHCP).
package cloudinit

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// Label is the volume label cloud-init looks for.
const Label = "cidata"

// DefaultUserData is the user-data of a seed that has none.
const DefaultUserData = "#cloud-config\n"

// Seed is what one server is told at first boot.
type Seed struct {
	InstanceID string   // changes when the server is replaced; defaults to Hostname
	Hostname   string   // local-hostname
	UserData   string   // given verbatim; DefaultUserData when empty
	SSHKeys    []string // authorized keys for the default user
	MAC        string   // NIC to configure; when empty, the first ethernet ("e*")
	Address    string   // static address in CIDR form, e.g. 10.0.0.10/24; DHCP when empty
	Gateway    string   // default route, optional
	DNS        []string // name servers, optional
	// ReadyURL is the server's ready URL (the signal readiness check): in
	// meta-data as kiln_ready_url and as the file kiln-ready-url.
	ReadyURL string
}

// Validate reports the first field that cloud-init could not use.
func (s Seed) Validate() error {
	if s.Hostname == "" && s.InstanceID == "" {
		return fmt.Errorf("seed: hostname or instance id is required")
	}
	for _, c := range s.Hostname {
		if !(c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("seed: hostname %q: only letters, digits, '-' and '.' are allowed", s.Hostname)
		}
	}
	if strings.ContainsAny(s.InstanceID, "\n\r") {
		return fmt.Errorf("seed: instance id %q holds a line break", s.InstanceID)
	}
	if s.MAC != "" {
		if _, err := net.ParseMAC(s.MAC); err != nil {
			return fmt.Errorf("seed: mac: %w", err)
		}
	}
	if s.Address != "" {
		p, err := netip.ParsePrefix(s.Address)
		if err != nil {
			return fmt.Errorf("seed: address %q: want CIDR form such as 10.0.0.10/24", s.Address)
		}
		if !p.Addr().Is4() {
			return fmt.Errorf("seed: address %q: only IPv4 is supported", s.Address)
		}
	}
	if s.Gateway != "" {
		if s.Address == "" {
			return fmt.Errorf("seed: gateway %q without an address", s.Gateway)
		}
		g, err := netip.ParseAddr(s.Gateway)
		if err != nil || !g.Is4() {
			return fmt.Errorf("seed: gateway %q is not an IPv4 address", s.Gateway)
		}
	}
	for _, d := range s.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("seed: name server %q is not an IP address", d)
		}
	}
	if strings.ContainsAny(s.ReadyURL, "\n\r \t") {
		return fmt.Errorf("seed: ready URL %q holds white space", s.ReadyURL)
	}
	for _, k := range s.SSHKeys {
		if strings.ContainsAny(k, "\n\r") {
			return fmt.Errorf("seed: ssh key holds a line break")
		}
	}
	return nil
}

// Files returns the seed's files by name: meta-data, user-data and
// network-config. It does not validate; ISO does.
func (s Seed) Files() map[string][]byte {
	m := map[string][]byte{
		"meta-data":      []byte(s.metaData()),
		"user-data":      []byte(s.userData()),
		"network-config": []byte(s.networkConfig()),
	}
	if s.ReadyURL != "" {
		m["kiln-ready-url"] = []byte(s.ReadyURL + "\n")
	}
	return m
}

// ISO returns the seed as an ISO 9660 image (with Joliet names) labelled
// "cidata", ready to attach to the server as a CD-ROM or disk.
func (s Seed) ISO() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	m := s.Files()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	files := make([]isoFile, len(names))
	for i, n := range names {
		files[i] = isoFile{name: n, data: m[n]}
	}
	return writeISO(Label, files)
}

func (s Seed) instanceID() string {
	if s.InstanceID != "" {
		return s.InstanceID
	}
	return s.Hostname
}

// q quotes a YAML scalar; a JSON string is a valid YAML double-quoted scalar.
func q(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// list writes, when there are items, the line(s) head and then the items
// as a YAML list of quoted strings, each line indented by indent.
func list(b *strings.Builder, head, indent string, items []string) {
	if len(items) == 0 {
		return
	}
	b.WriteString(head)
	for _, it := range items {
		fmt.Fprintf(b, "%s- %s\n", indent, q(it))
	}
}

func (s Seed) metaData() string {
	var b strings.Builder
	fmt.Fprintf(&b, "instance-id: %s\n", q(s.instanceID()))
	if s.Hostname != "" {
		fmt.Fprintf(&b, "local-hostname: %s\n", q(s.Hostname))
	}
	if s.ReadyURL != "" {
		fmt.Fprintf(&b, "kiln_ready_url: %s\n", q(s.ReadyURL))
	}
	list(&b, "public-keys:\n", "  ", s.SSHKeys)
	return b.String()
}

// userData returns the given user-data, or a #cloud-config that installs the
// ssh keys (cloud-init also reads them from meta-data's public-keys).
func (s Seed) userData() string {
	if s.UserData != "" {
		return s.UserData
	}
	if len(s.SSHKeys) == 0 {
		return DefaultUserData
	}
	var b strings.Builder
	b.WriteString(DefaultUserData)
	list(&b, "ssh_authorized_keys:\n", "  ", s.SSHKeys)
	return b.String()
}

// networkConfig returns cloud-init network config version 2 for one NIC.
func (s Seed) networkConfig() string {
	var b strings.Builder
	b.WriteString("version: 2\nethernets:\n  eth0:\n    match:\n")
	if s.MAC != "" {
		mac := s.MAC
		if hw, err := net.ParseMAC(s.MAC); err == nil {
			mac = hw.String()
		}
		fmt.Fprintf(&b, "      macaddress: %s\n", q(strings.ToLower(mac)))
		b.WriteString("    set-name: eth0\n")
	} else {
		b.WriteString("      name: \"e*\"\n")
	}
	if s.Address == "" {
		b.WriteString("    dhcp4: true\n")
		return b.String()
	}
	list(&b, "    addresses:\n", "      ", []string{s.Address})
	if s.Gateway != "" {
		fmt.Fprintf(&b, "    routes:\n      - to: \"0.0.0.0/0\"\n        via: %s\n", q(s.Gateway))
	}
	list(&b, "    nameservers:\n      addresses:\n", "        ", s.DNS)
	return b.String()
}
