// Package executors holds what every resource executor shares: the error a
// Read returns for something that is not there, and the rules by which a
// resource's owner is written on the objects it makes.
//
// Each kind lives in its own sub-package (network, portforward, ...) behind
// a small interface: Read, Create, Update, Delete, ctx first, idempotent,
// keyed by the stack name and the resource address.
package executors

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// ErrNotFound is returned (wrapped) by an executor's Read when the object is
// absent. Callers test it with errors.Is.
var ErrNotFound = errors.New("not found")

// OwnerPrefix starts every owner tag, so objects made by kiln can be found.
const OwnerPrefix = "kiln:"

// Owner is the tag written on every object kiln makes for a resource (an
// iptables comment, a link alias, libvirt metadata): "kiln:<stack>/<address>".
func Owner(stack, address string) string {
	return OwnerPrefix + stack + "/" + address
}

// ParseOwner splits an owner tag back into stack and address. ok is false
// when tag is not a kiln owner tag.
func ParseOwner(tag string) (stack, address string, ok bool) {
	rest, found := strings.CutPrefix(tag, OwnerPrefix)
	if !found {
		return "", "", false
	}
	stack, address, found = strings.Cut(rest, "/")
	if !found || stack == "" || address == "" {
		return "", "", false
	}
	return stack, address, true
}

// hashLen is the number of hex digits of the hash PhysicalName adds.
const hashLen = 6

// ShortHash is a short, stable digest of a resource's identity.
func ShortHash(stack, address string) string {
	sum := sha256.Sum256([]byte(stack + "/" + address))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// PhysicalName derives a readable, deterministic OS object name of at most
// max bytes from a stack name and a resource address: "<stack>-<address>"
// with every byte outside [a-z0-9_-] turned into '-' (and runs of them
// folded), for example "ci-1-server-web-0" for ("ci-1", "server.web[0]").
//
// When that does not fit in max, the readable part is cut and a short hash
// of the exact (stack, address) pair is added after a '-', so two long names
// sharing a prefix still differ. max below 8 is raised to 8.
//
// Sanitizing can make two different pairs read alike (stack "a-b" with
// address "c" and stack "a" with address "b-c"); every object also carries
// its exact Owner tag, which is what executors check before adopting or
// deleting anything.
func PhysicalName(stack, address string, max int) string {
	if max < hashLen+2 {
		max = hashLen + 2
	}
	readable := sanitize(stack + "-" + address)
	if len(readable) <= max && readable != "" {
		return readable
	}
	keep := max - hashLen - 1
	if keep > len(readable) {
		keep = len(readable)
	}
	head := strings.TrimRight(readable[:keep], "-")
	if head == "" {
		return ShortHash(stack, address)
	}
	return head + "-" + ShortHash(stack, address)
}

func sanitize(s string) string {
	var b strings.Builder
	dash := true // drop leading separators
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
			dash = false
		default:
			if !dash {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	return strings.TrimRight(b.String(), "-")
}
