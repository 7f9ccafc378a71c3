package accel

import (
	"encoding/json"
	"fmt"

	"libvirt.org/go/libvirt"
)

// A guest whose vCPU hits a KVM internal error (the KVM_EXIT_INTERNAL_ERROR
// exit; "KVM internal error. Suberror: 1 ... emulation failure" in the
// domain's QEMU log) is not killed: QEMU stops its vCPUs and enters its
// "internal-error" run state. libvirt reports such a domain as
// DOMAIN_PAUSED with reason DOMAIN_PAUSED_UNKNOWN (state 3, reason 0) —
// measured with libvirt 9.0 and QEMU 7.2, and libvirt maps QEMU's
// internal-error status to PAUSED_UNKNOWN when it reconnects too — not
// DOMAIN_PAUSED_CRASHED, which is for a guest panic. PAUSED_UNKNOWN alone
// is ambiguous (a pause libvirt did not ask for), so KVMInternalError asks
// QEMU for its run state to be sure.

// KVMInternalError reports whether dom is stopped because KVM could not run
// it: libvirt has it paused with reason unknown and QEMU's run state is
// "internal-error". A running domain, or one paused for any other reason,
// is reported false without asking QEMU.
//
// Asking QEMU goes through libvirt's QEMU monitor passthrough
// (virDomainQemuMonitorCommand, query-status), after which libvirt marks
// the domain "tainted: custom-monitor" in its logs; that is harmless, and
// only a domain that is already paused for an unknown reason is asked.
func KVMInternalError(dom *libvirt.Domain) (bool, error) {
	state, reason, err := dom.GetState()
	if err != nil {
		return false, fmt.Errorf("domain state: %w", err)
	}
	if !MaybeKVMInternalError(state, reason) {
		return false, nil
	}
	out, err := dom.QemuMonitorCommand(`{"execute":"query-status"}`, libvirt.DOMAIN_QEMU_MONITOR_COMMAND_DEFAULT)
	if err != nil {
		return false, fmt.Errorf("query-status: %w", err)
	}
	status, err := RunStatus(out)
	if err != nil {
		return false, err
	}
	return status == "internal-error", nil
}

// MaybeKVMInternalError reports whether libvirt's state and reason are what
// a domain stopped by a KVM internal error shows: DOMAIN_PAUSED with reason
// DOMAIN_PAUSED_UNKNOWN. It is necessary, not sufficient (see
// KVMInternalError).
func MaybeKVMInternalError(state libvirt.DomainState, reason int) bool {
	return state == libvirt.DOMAIN_PAUSED && reason == int(libvirt.DOMAIN_PAUSED_UNKNOWN)
}

// RunStatus is QEMU's run state ("running", "paused", "internal-error",
// ...) in the answer to a QMP query-status.
func RunStatus(reply string) (string, error) {
	var r struct {
		Return *struct {
			Status string `json:"status"`
		} `json:"return"`
	}
	if err := json.Unmarshal([]byte(reply), &r); err != nil {
		return "", fmt.Errorf("query-status reply %q: %w", reply, err)
	}
	if r.Return == nil || r.Return.Status == "" {
		return "", fmt.Errorf("query-status reply %q has no status", reply)
	}
	return r.Return.Status, nil
}
