package accel

import (
	"strconv"

	"libvirt.org/go/libvirt"
)

var stateNames = map[libvirt.DomainState]string{
	libvirt.DOMAIN_NOSTATE:     "nostate",
	libvirt.DOMAIN_RUNNING:     "running",
	libvirt.DOMAIN_BLOCKED:     "blocked",
	libvirt.DOMAIN_PAUSED:      "paused",
	libvirt.DOMAIN_SHUTDOWN:    "shutdown",
	libvirt.DOMAIN_SHUTOFF:     "shutoff",
	libvirt.DOMAIN_CRASHED:     "crashed",
	libvirt.DOMAIN_PMSUSPENDED: "pmsuspended",
}

// reasonNames are libvirt's reason names per state, as virsh domstate
// --reason prints them (virDomain*Reason in libvirt-domain.h).
var reasonNames = map[libvirt.DomainState]map[int]string{
	libvirt.DOMAIN_RUNNING: {
		int(libvirt.DOMAIN_RUNNING_UNKNOWN):            "unknown",
		int(libvirt.DOMAIN_RUNNING_BOOTED):             "booted",
		int(libvirt.DOMAIN_RUNNING_MIGRATED):           "migrated",
		int(libvirt.DOMAIN_RUNNING_RESTORED):           "restored",
		int(libvirt.DOMAIN_RUNNING_FROM_SNAPSHOT):      "from snapshot",
		int(libvirt.DOMAIN_RUNNING_UNPAUSED):           "unpaused",
		int(libvirt.DOMAIN_RUNNING_MIGRATION_CANCELED): "migration canceled",
		int(libvirt.DOMAIN_RUNNING_SAVE_CANCELED):      "save canceled",
		int(libvirt.DOMAIN_RUNNING_WAKEUP):             "event wakeup",
		int(libvirt.DOMAIN_RUNNING_CRASHED):            "crashed",
		int(libvirt.DOMAIN_RUNNING_POSTCOPY):           "post-copy",
		int(libvirt.DOMAIN_RUNNING_POSTCOPY_FAILED):    "post-copy failed",
	},
	libvirt.DOMAIN_BLOCKED: {
		int(libvirt.DOMAIN_BLOCKED_UNKNOWN): "unknown",
	},
	libvirt.DOMAIN_PAUSED: {
		int(libvirt.DOMAIN_PAUSED_UNKNOWN):         "unknown",
		int(libvirt.DOMAIN_PAUSED_USER):            "user",
		int(libvirt.DOMAIN_PAUSED_MIGRATION):       "migrating",
		int(libvirt.DOMAIN_PAUSED_SAVE):            "saving",
		int(libvirt.DOMAIN_PAUSED_DUMP):            "dumping",
		int(libvirt.DOMAIN_PAUSED_IOERROR):         "I/O error",
		int(libvirt.DOMAIN_PAUSED_WATCHDOG):        "watchdog",
		int(libvirt.DOMAIN_PAUSED_FROM_SNAPSHOT):   "from snapshot",
		int(libvirt.DOMAIN_PAUSED_SHUTTING_DOWN):   "shutting down",
		int(libvirt.DOMAIN_PAUSED_SNAPSHOT):        "creating snapshot",
		int(libvirt.DOMAIN_PAUSED_CRASHED):         "crashed",
		int(libvirt.DOMAIN_PAUSED_STARTING_UP):     "starting up",
		int(libvirt.DOMAIN_PAUSED_POSTCOPY):        "post-copy",
		int(libvirt.DOMAIN_PAUSED_POSTCOPY_FAILED): "post-copy failed",
		int(libvirt.DOMAIN_PAUSED_API_ERROR):       "api error",
	},
	libvirt.DOMAIN_SHUTDOWN: {
		int(libvirt.DOMAIN_SHUTDOWN_UNKNOWN): "unknown",
		int(libvirt.DOMAIN_SHUTDOWN_USER):    "user",
	},
	libvirt.DOMAIN_SHUTOFF: {
		int(libvirt.DOMAIN_SHUTOFF_UNKNOWN):       "unknown",
		int(libvirt.DOMAIN_SHUTOFF_SHUTDOWN):      "shutdown",
		int(libvirt.DOMAIN_SHUTOFF_DESTROYED):     "destroyed",
		int(libvirt.DOMAIN_SHUTOFF_CRASHED):       "crashed",
		int(libvirt.DOMAIN_SHUTOFF_MIGRATED):      "migrated",
		int(libvirt.DOMAIN_SHUTOFF_SAVED):         "saved",
		int(libvirt.DOMAIN_SHUTOFF_FAILED):        "failed",
		int(libvirt.DOMAIN_SHUTOFF_FROM_SNAPSHOT): "from snapshot",
		int(libvirt.DOMAIN_SHUTOFF_DAEMON):        "daemon",
	},
	libvirt.DOMAIN_CRASHED: {
		int(libvirt.DOMAIN_CRASHED_UNKNOWN):  "unknown",
		int(libvirt.DOMAIN_CRASHED_PANICKED): "panicked",
	},
	libvirt.DOMAIN_PMSUSPENDED: {
		int(libvirt.DOMAIN_PMSUSPENDED_UNKNOWN): "unknown",
	},
}

// StateName returns libvirt's names for a domain state and its reason, as
// dom.GetState returns them: (DOMAIN_PAUSED, 0) is ("paused", "unknown").
// A number libvirt added after this list is given as "state 9" or
// "reason 17".
func StateName(state libvirt.DomainState, reason int) (string, string) {
	s, ok := stateNames[state]
	if !ok {
		s = "state " + strconv.Itoa(int(state))
	}
	r, ok := reasonNames[state][reason]
	if !ok {
		r = "reason " + strconv.Itoa(reason)
	}
	return s, r
}
