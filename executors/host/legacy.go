package host

import (
	"errors"
	"fmt"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/records"
)

// ErrLegacy says that the instance an action of a non-default project is
// about was made by a kiln version whose host objects carried no project:
// its names and owner tag are those of the default project's stack of the
// same name, and nothing on the host tells the two apart. The executors
// never touch such an object for another project: its Read says it is
// gone and its Delete succeeds without removing anything (kiln gc lists
// what is left as the default project's, see docs/architecture.md).
var ErrLegacy = errors.New("made by a kiln version without projects: its objects carry the default project's names and are left to kiln gc")

// LegacyInstance returns an error wrapping ErrLegacy when a, of a
// non-default project, is about an instance (a.ID) named as the default
// project's stack of the same name names it (the kind's kinds.Kind.ID) or
// registered to that stack (rec, found).
func LegacyInstance(kind string, a executors.Instance, rec records.Record, found bool) error {
	project, bare := executors.SplitScope(a.Stack)
	if project == executors.DefaultProject || a.ID == "" {
		return nil
	}
	if idOf(kind, a)(bare, a.Address) == a.ID || (found && rec.Stack == bare) {
		return fmt.Errorf("%s %s: instance %q %w", kind, a.Address, a.ID, ErrLegacy)
	}
	return nil
}

// Existing reads the answer of a target lookup for a read or a delete:
// gone is true, and err nil, when the instance is an older kiln's (see
// ErrLegacy), which a read finds absent and a delete leaves to kiln gc.
func Existing(phys string, err error) (_ string, gone bool, _ error) {
	if IsLegacy(err) {
		return "", true, nil
	}
	return phys, false, err
}

// IsLegacy reports whether err says the instance is an older kiln's (see
// ErrLegacy): Read answers that it does not exist, Delete that it is done.
func IsLegacy(err error) bool { return errors.Is(err, ErrLegacy) }
