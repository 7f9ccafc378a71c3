package agent

import "github.com/kiln-dev/kiln/executors/records"

// RegistryDir is the directory, under the agent's data directory, of the
// real drivers' own records (executors/records).
const RegistryDir = records.Dir

// record is one instance made by the real drivers; hostEntry one server
// NIC on a network (executors/records).
type (
	record    = records.Record
	hostEntry = records.Host
)
