package kinds

import (
	"encoding/hex"
	"strings"

	"github.com/kiln-dev/kiln/executors"
)

// Physical names. Each kind's host objects are named after the scope (see
// executors.Scope) and the physical address of the instance (the resource
// address, plus "~hash" for the create half of a replace); the name of the
// main object is the instance's id. The executors name their objects with
// these functions, and the agent finds an instance by them.

// BridgePrefix starts the name of every bridge kiln makes; iptables matches
// all of them with "kb-+".
const BridgePrefix = "kb-"

// BridgeName is a network's id, its bridge's name: at most 15 bytes (the
// kernel's limit), readable, deterministic.
func BridgeName(scope, phys string) string {
	return BridgePrefix + executors.PhysicalName(scope, phys, 15-len(BridgePrefix))
}

// ServerName is a server's id, its libvirt domain's name.
func ServerName(scope, phys string) string { return executors.PhysicalName(scope, phys, 64) }

// Hostname is the hostname of a server: its domain name, within the 63
// bytes a hostname may have and without '_' or '.' (the '.' before the
// hash of a non-default project's name would make it a domain name).
func Hostname(scope, phys string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(executors.PhysicalName(scope, phys, 63))
}

// PortForwardID is a port forward's id, a readable name of its owner.
func PortForwardID(scope, phys string) string { return executors.PhysicalName(scope, phys, 64) }

// VolumeNamePrefix starts the name of every volume kiln makes in the pool.
const VolumeNamePrefix = "kiln_"

// Volume formats; an unset format is QCOW2.
const (
	QCOW2 = "qcow2"
	Raw   = "raw"
)

// VolumeName is a volume's id, its name in the kiln-volumes pool for the
// given format.
func VolumeName(scope, phys, format string) string {
	return VolumeBaseName(scope, phys) + "." + format
}

// maxVolumeName keeps names well below NAME_MAX (255) with room for a
// suffix.
const maxVolumeName = 200

// VolumeBaseName is the owner-carrying stem of a volume's name, without
// format suffix.
//
// In the default project it is "kiln_<stack>_<address>", each part
// lowercased with every byte outside [a-z0-9] turned into '-', and a short
// hash of the exact pair added when the result would be too long.
//
// In any other project (scope "<project>/<stack>", see executors.Scope) it
// is "kiln_<project>_<stack>_<address>-<hash>": the project as it is when
// cleaning leaves it alone, else "0" and its hex bytes (so two projects
// never read alike), the stack and address cleaned, and 12 hex digits of a
// hash of the exact scope and address (so two stacks or addresses of one
// project that clean alike still differ). A part never holds a '_', so a
// default project's name (two '_') never equals another project's (three).
func VolumeBaseName(scope, phys string) string {
	project, stack, ok := strings.Cut(scope, "/")
	if !ok {
		name := VolumeNamePrefix + clean(scope) + "_" + clean(phys)
		if len(name) > maxVolumeName {
			name = strings.TrimRight(name[:maxVolumeName-7], "-_") + "-" + executors.ShortHash(scope, phys)
		}
		return name
	}
	if clean(project) != project {
		project = "0" + hex.EncodeToString([]byte(project))
	}
	name := VolumeNamePrefix + project + "_" + clean(stack) + "_" + clean(phys)
	if len(name) > maxVolumeName {
		name = strings.TrimRight(name[:maxVolumeName], "-_")
	}
	return name + "-" + executors.ProjectHash(scope, phys, 12)
}

func clean(s string) string {
	var b strings.Builder
	dash := true
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}

// volumeID is a volume's id from its configured attributes: qcow2 unless
// the format attribute says otherwise.
func volumeID(scope, phys string, attrs map[string]any) string {
	format, _ := attrs["format"].(string)
	if format == "" {
		format = QCOW2
	}
	return VolumeName(scope, phys, format)
}

// withoutAttrs adapts a name that depends on scope and address alone.
func withoutAttrs(name func(scope, phys string) string) func(string, string, map[string]any) string {
	return func(scope, phys string, _ map[string]any) string { return name(scope, phys) }
}
