package planner

import (
	"errors"

	"github.com/kiln-dev/kiln/spec"
)

// Plan diffs the desired stack against the actual state. desired nil means
// destroy everything in actual; actual nil means nothing exists yet.
func Plan(desired *spec.Stack, actual *State) (*Result, error) {
	return nil, errors.New("not implemented")
}
