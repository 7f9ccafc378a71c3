package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The addresses of a network's guests. A network's gateway is the first
// host address of its CIDR; the servers on it are fixed DHCP hosts (Spec's
// Hosts), each given an address when its network block asks for none.

// FirstHost is the offset in a network of the first address handed to a
// server that asks for none.
const FirstHost = 10

// Gateway is the gateway of the network of an IPv4 CIDR, with the CIDR's
// prefix length.
func Gateway(cidr string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("cidr %q is not an IPv4 CIDR", cidr)
	}
	p = p.Masked()
	return netip.PrefixFrom(p.Addr().Next(), p.Bits()), nil
}

// PickAddress is the address of the NIC with mac on the network of gateway
// gw whose hosts are hosts: want when set (an address or a CIDR), else the
// one the NIC was given before, else the lowest free host address from the
// network's FirstHost on.
func PickAddress(gw netip.Prefix, hosts []Host, mac, want string) (netip.Addr, error) {
	p := netip.PrefixFrom(gw.Addr(), gw.Bits()).Masked()
	used := map[netip.Addr]string{}
	for _, h := range hosts {
		if ip, err := netip.ParseAddr(h.IP); err == nil {
			used[ip] = h.MAC
		}
	}
	if want != "" {
		ip, err := netip.ParseAddr(want)
		if err != nil {
			pf, perr := netip.ParsePrefix(want)
			if perr != nil {
				return netip.Addr{}, fmt.Errorf("address %q is not an IPv4 address", want)
			}
			ip = pf.Addr()
		}
		if !p.Contains(ip) || ip == gw.Addr() || ip == p.Addr() || ip == broadcast(p) {
			return netip.Addr{}, fmt.Errorf("address %s is not a guest address of %s", ip, p)
		}
		if other, ok := used[ip]; ok && other != mac {
			return netip.Addr{}, fmt.Errorf("address %s is already given to %s", ip, other)
		}
		return ip, nil
	}
	for ip, m := range used {
		if m == mac {
			return ip, nil
		}
	}
	ip := p.Addr()
	for range FirstHost {
		ip = ip.Next()
	}
	for ; p.Contains(ip) && ip != broadcast(p); ip = ip.Next() {
		if _, taken := used[ip]; !taken && ip != gw.Addr() {
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address left in %s from its host %d on", p, FirstHost)
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}
