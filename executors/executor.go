// Package executors holds what every resource executor shares: the error a
// Read returns for something that is not there, and the rules by which a
// resource's owner is written on the objects it makes.
//
// What kiln knows of each kind beside its template schema (its typed
// attributes, drift and image attributes, and the physical names of its
// objects) is declared once in the kinds sub-package, with the one list of
// kinds (kinds.All) and the decoder of attribute values into the typed
// structs.
//
// Every kind is run through one interface, Executor (request.go): a typed
// request in (the instance, and its attributes decoded once into the
// kind's struct), Create, Read, Update and Delete out, ctx first and
// idempotent. The agent keeps the registry of kind -> Executor and turns
// each of its actions into the typed request (daemon/agent/decode.go).
//
// Each kind's sub-package (image, network, volume, server, portforward)
// holds its Executor beside the host-level driver it runs (each driver
// with Read, Create, Delete and, but for the image cache, Update of its
// own shape: network.Read takes a Spec, volume.Read a scope and an
// address, the image cache a sha256) and the kind's own knowledge (a
// network's guest addressing, a server's ready checks and its DHCP hosts
// on its networks). What the Executors of one host share is in host: the
// records of the instances they made (the records sub-package), the
// operator's policy, per-object locks, and Target, which finds the
// instance an action is about.
package executors

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned (wrapped) by an executor's Read when the object is
// absent. Callers test it with errors.Is.
var ErrNotFound = errors.New("not found")

// OwnerPrefix starts every owner tag, so objects made by kiln can be found.
const OwnerPrefix = "kiln:"

// DefaultProject is the project of a request made without one (the
// embedded default, a management token): its objects keep the names and
// owner tags of kiln versions that had no projects.
const DefaultProject = "default"

// Scope is the (project, stack) pair that the objects of a stack belong to
// on a host, as one string: executors take it where they take a "stack"
// and write it into owner tags and physical names. For the default project
// (or none) it is the stack name alone, as before projects existed; for any
// other project it is "<project>/<stack>", so that stacks of the same name
// in two projects never share a name or a tag. A project name that is not
// a plain name ([a-z][a-z0-9_-]*) is written as "0" and its hex bytes,
// which no plain name can be and which holds no '/' or '.'.
func Scope(project, stack string) string {
	if project == "" || project == DefaultProject {
		return stack
	}
	return scopeProject(project) + "/" + stack
}

func scopeProject(project string) string {
	if plainName(project) {
		return project
	}
	return "0" + hex.EncodeToString([]byte(project))
}

// SplitScope is the inverse of Scope for a plain project name: the project
// ("default" for a bare stack name) and the stack.
func SplitScope(scope string) (project, stack string) {
	if p, s, ok := strings.Cut(scope, "/"); ok {
		return p, s
	}
	return DefaultProject, scope
}

// plainName reports whether s is [a-z][a-z0-9_-]*, the form of stack names.
func plainName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Owner is the tag written on every object kiln makes for a resource (an
// iptables comment, a link alias, libvirt metadata): "kiln:<scope>/<address>",
// that is "kiln:<stack>/<address>" in the default project and
// "kiln:<project>/<stack>/<address>" in any other (see Scope).
func Owner(scope, address string) string {
	return OwnerPrefix + scope + "/" + address
}

// MaxOwner is the longest owner tag the host objects can carry: an
// iptables comment holds at most 255 bytes (a link alias 255 too).
const MaxOwner = 255

// CheckOwner returns an error naming project, stack and address when their
// owner tag would not fit in MaxOwner bytes.
func CheckOwner(project, stack, address string) error {
	if n := len(Owner(Scope(project, stack), address)); n > MaxOwner {
		return fmt.Errorf("project %q, stack %q and resource %q make an owner tag of %d bytes; host objects hold at most %d: use shorter names", project, stack, address, n, MaxOwner)
	}
	return nil
}

// ParseOwner splits an owner tag back into scope and address. ok is false
// when tag is not a kiln owner tag. Both forms are read: a resource address
// always holds a '.' (kind.name) before any '/', and a scope's parts never
// hold one, so "kiln:p1/web/server.a" is project p1's and
// "kiln:web/server.a[\"x/y\"]" the default project's.
func ParseOwner(tag string) (scope, address string, ok bool) {
	rest, found := strings.CutPrefix(tag, OwnerPrefix)
	if !found {
		return "", "", false
	}
	first, after, found := strings.Cut(rest, "/")
	if !found || first == "" || after == "" || strings.Contains(first, ".") {
		return "", "", false
	}
	if second, addr, found := strings.Cut(after, "/"); found && second != "" && !strings.ContainsAny(second, ".[\"") {
		if !strings.Contains(addr, ".") {
			return "", "", false
		}
		return first + "/" + second, addr, true
	}
	if !strings.Contains(after, ".") {
		return "", "", false
	}
	return first, after, true
}

// hashLen is the number of hex digits of the hash PhysicalName adds.
const hashLen = 6

// ShortHash is a short, stable digest of a resource's identity (scope and
// address).
func ShortHash(stack, address string) string {
	sum := sha256.Sum256([]byte(stack + "/" + address))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// PhysicalName derives a readable, deterministic OS object name of at most
// max bytes from a scope (see Scope) and a resource address.
//
// In the default project (a scope without '/') it is "<stack>-<address>"
// with every byte outside [a-z0-9_] turned into '-' (and runs of them
// folded), for example "ci-1-server-web-0" for ("ci-1", "server.web[0]").
// When that does not fit in max, the readable part is cut and a short hash
// of the exact (stack, address) pair is added after a '-', so two long
// names sharing a prefix still differ. max below 8 is raised to 8.
//
// In any other project the name always ends in '.' and a hash of the exact
// (project, stack, address) triple (12 hex digits, fewer only where max
// leaves no room), after as much of "<project>-<stack>-<address>",
// sanitized, as fits: "p1-web-server-web-0.3fa2c1d09e4b". A default
// project's name never holds a '.', so it never equals another project's,
// whatever '-' its stack name holds; two other projects' names differ in
// their hash.
//
// Sanitizing can make two different pairs of one project read alike (stack
// "a-b" with address "c" and stack "a" with address "b-c"); every object
// also carries its exact Owner tag, which is what executors check before
// adopting or deleting anything.
func PhysicalName(scope, address string, max int) string {
	if max < hashLen+2 {
		max = hashLen + 2
	}
	if strings.Contains(scope, "/") {
		return projectName(scope, address, max)
	}
	stack := scope
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

// projectHashLen is the number of hex digits of the hash that qualifies
// the name of a non-default project's object.
const projectHashLen = 12

// ProjectHash is the hash that qualifies the names of a non-default
// project's objects: n hex digits of a digest of the exact scope and
// address.
func ProjectHash(scope, address string, n int) string {
	sum := sha256.Sum256([]byte(scope + "\x00" + address))
	return hex.EncodeToString(sum[:])[:n]
}

func projectName(scope, address string, max int) string {
	n := projectHashLen
	if n > max-1 {
		n = max - 1
	}
	keep := max - n - 1
	readable := sanitize(scope + "-" + address)
	if keep > len(readable) {
		keep = len(readable)
	}
	head := strings.TrimRight(readable[:keep], "-")
	return head + "." + ProjectHash(scope, address, n)
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
