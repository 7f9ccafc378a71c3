package spec

import (
	"fmt"
	"math/big"
	"net/netip"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/gocty"
)

// parseCIDR reads a prefix such as "10.20.0.0/24". Host bits may be set
// (cidrhost("10.0.0.5/24", 1) works); callers that need a network address
// check p == p.Masked().
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix such as \"10.20.0.0/24\"", s)
	}
	return p, nil
}

func addrToInt(a netip.Addr) *big.Int {
	return new(big.Int).SetBytes(a.AsSlice())
}

func intToAddr(n *big.Int, is4 bool) (netip.Addr, bool) {
	size := 16
	if is4 {
		size = 4
	}
	if n.Sign() < 0 || n.BitLen() > size*8 {
		return netip.Addr{}, false
	}
	b := make([]byte, size)
	n.FillBytes(b)
	a, ok := netip.AddrFromSlice(b)
	return a, ok
}

// prefixOffset returns the address at offset n inside p (negative n counts from
// the end: -1 is the last address).
func prefixOffset(p netip.Prefix, n *big.Int) (netip.Addr, error) {
	p = p.Masked()
	hostBits := uint(p.Addr().BitLen() - p.Bits())
	size := new(big.Int).Lsh(big.NewInt(1), hostBits)
	off := new(big.Int).Set(n)
	if off.Sign() < 0 {
		off.Add(off, size)
	}
	if off.Sign() < 0 || off.Cmp(size) >= 0 {
		return netip.Addr{}, fmt.Errorf("prefix %s has no host number %s (it holds %s addresses)", p, n, size)
	}
	a, _ := intToAddr(new(big.Int).Add(addrToInt(p.Addr()), off), p.Addr().Is4())
	return a, nil
}

// lastAddr is the last address of p (the broadcast address of an IPv4 network).
func lastAddr(p netip.Prefix) netip.Addr {
	a, _ := prefixOffset(p, big.NewInt(-1))
	return a
}

// firstHost is the first usable host of p: the gateway kiln gives a network.
func firstHost(p netip.Prefix) netip.Addr {
	a, _ := prefixOffset(p, big.NewInt(1))
	return a
}

var cidrHostFunc = stringResultFunc("Returns the address of host number hostnum inside prefix.",
	[]function.Parameter{{Name: "prefix", Type: cty.String}, {Name: "hostnum", Type: cty.Number}},
	func(args []cty.Value) (string, error) {
		p, err := prefixArg(args)
		if err != nil {
			return "", err
		}
		n, err := wholeArg(args, 1, "hostnum")
		if err != nil {
			return "", err
		}
		a, err := prefixOffset(p, n)
		if err != nil {
			return "", function.NewArgError(1, err)
		}
		return a.String(), nil
	})

var cidrNetmaskFunc = stringResultFunc("Returns the IPv4 netmask of prefix in dotted-decimal form.",
	[]function.Parameter{{Name: "prefix", Type: cty.String}},
	func(args []cty.Value) (string, error) {
		p, err := prefixArg(args)
		if err != nil {
			return "", err
		}
		if !p.Addr().Is4() {
			return "", function.NewArgErrorf(0, "cidrnetmask works only on IPv4 prefixes")
		}
		m := ^uint32(0) << (32 - p.Bits())
		if p.Bits() == 0 {
			m = 0
		}
		return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String(), nil
	})

// prefixArg is the first argument of a cidr function, parsed.
func prefixArg(args []cty.Value) (netip.Prefix, error) {
	p, err := parseCIDR(args[0].AsString())
	if err != nil {
		return netip.Prefix{}, function.NewArgError(0, err)
	}
	return p, nil
}

// wholeArg is argument i, which must be a whole number (named name in the
// error).
func wholeArg(args []cty.Value, i int, name string) (*big.Int, error) {
	bf := args[i].AsBigFloat()
	if !bf.IsInt() {
		return nil, function.NewArgErrorf(i, "%s must be a whole number", name)
	}
	n, _ := bf.Int(nil)
	return n, nil
}

func subnet(p netip.Prefix, newbits int, netnum *big.Int) (netip.Prefix, error) {
	p = p.Masked()
	newLen := p.Bits() + newbits
	if newbits < 0 || newLen > p.Addr().BitLen() {
		return netip.Prefix{}, fmt.Errorf("cannot extend prefix %s by %d bits", p, newbits)
	}
	max := new(big.Int).Lsh(big.NewInt(1), uint(newbits))
	if netnum.Sign() < 0 || netnum.Cmp(max) >= 0 {
		return netip.Prefix{}, fmt.Errorf("prefix %s extended by %d bits has no network number %s", p, newbits, netnum)
	}
	off := new(big.Int).Lsh(netnum, uint(p.Addr().BitLen()-newLen))
	a, _ := intToAddr(new(big.Int).Add(addrToInt(p.Addr()), off), p.Addr().Is4())
	return netip.PrefixFrom(a, newLen), nil
}

var cidrSubnetFunc = stringResultFunc("Returns subnet number netnum of prefix extended by newbits bits.",
	[]function.Parameter{
		{Name: "prefix", Type: cty.String},
		{Name: "newbits", Type: cty.Number},
		{Name: "netnum", Type: cty.Number},
	},
	func(args []cty.Value) (string, error) {
		p, err := prefixArg(args)
		if err != nil {
			return "", err
		}
		var newbits int
		if err := gocty.FromCtyValue(args[1], &newbits); err != nil {
			return "", function.NewArgErrorf(1, "newbits must be a whole number")
		}
		n, err := wholeArg(args, 2, "netnum")
		if err != nil {
			return "", err
		}
		s, err := subnet(p, newbits, n)
		if err != nil {
			return "", err
		}
		return s.String(), nil
	})

var cidrSubnetsFunc = function.New(&function.Spec{
	Description: "Returns consecutive subnets of prefix, one per newbits argument.",
	Params:      []function.Parameter{{Name: "prefix", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "newbits", Type: cty.Number},
	Type:        function.StaticReturnType(cty.List(cty.String)),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		p, err := prefixArg(args)
		if err != nil {
			return cty.UnknownVal(cty.List(cty.String)), err
		}
		p = p.Masked()
		if len(args) == 1 {
			return cty.ListValEmpty(cty.String), nil
		}
		next := addrToInt(p.Addr())
		end := new(big.Int).Add(addrToInt(lastAddr(p)), big.NewInt(1))
		var out []cty.Value
		for i, a := range args[1:] {
			var nb int
			if err := gocty.FromCtyValue(a, &nb); err != nil || nb < 1 || p.Bits()+nb > p.Addr().BitLen() {
				return cty.UnknownVal(cty.List(cty.String)), function.NewArgErrorf(i+1, "invalid newbits")
			}
			l := p.Bits() + nb
			blk := new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-l))
			// align up
			rem := new(big.Int).Mod(next, blk)
			if rem.Sign() != 0 {
				next.Add(next, new(big.Int).Sub(blk, rem))
			}
			if new(big.Int).Add(next, blk).Cmp(end) > 0 {
				return cty.UnknownVal(cty.List(cty.String)), function.NewArgErrorf(i+1, "not enough room in %s for another /%d", p, l)
			}
			a, _ := intToAddr(next, p.Addr().Is4())
			out = append(out, cty.StringVal(netip.PrefixFrom(a, l).String()))
			next = new(big.Int).Add(next, blk)
		}
		return cty.ListVal(out), nil
	},
})
