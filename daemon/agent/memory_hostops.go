package agent

import (
	"context"
	"fmt"
	"strings"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
)

var _ HostOps = (*Memory)(nil)

// The memory set's host operations, for tests of the routes: images are
// the image objects (sha256 is their id), orphans are objects whose stack
// (remembered at create) owned disowns, a console is one line of text.

// Images lists the image objects.
func (m *Memory) Images(ctx context.Context) ([]api.ImageInfo, error) {
	var out []api.ImageInfo
	for _, o := range m.D.Objects() {
		if o.Kind != "image" {
			continue
		}
		format, _ := o.Attrs["format"].(string)
		if format == "" {
			format = "qcow2"
		}
		size, _ := o.Computed["size"].(int64)
		out = append(out, api.ImageInfo{SHA256: o.ID, Format: format, Size: size})
	}
	return out, ctx.Err()
}

// PruneImages deletes the image objects not in inUse.
func (m *Memory) PruneImages(ctx context.Context, inUse map[string]bool) ([]api.ImageInfo, error) {
	var removed []api.ImageInfo
	for _, o := range m.D.Objects() {
		if o.Kind != "image" || inUse[o.ID] {
			continue
		}
		if err := m.D.Delete(ctx, o.Kind, o.Address, o.ID); err != nil {
			return removed, err
		}
		size, _ := o.Computed["size"].(int64)
		removed = append(removed, api.ImageInfo{SHA256: o.ID, Format: "qcow2", Size: size})
	}
	m.written()
	return removed, nil
}

// Orphans lists the objects whose stack and address owned disowns (an
// object made before the stack was remembered counts as owned).
func (m *Memory) Orphans(ctx context.Context, owned func(stack, address string) bool) ([]api.Orphan, error) {
	var out []api.Orphan
	for _, o := range m.D.Objects() {
		stack := m.stackOf(o.ID)
		// A non-default project's object is kept under its scope and
		// address (see memAddress).
		address := strings.TrimPrefix(o.Address, stack+"/")
		if stack == "" || owned(stack, address) {
			continue
		}
		out = append(out, api.Orphan{Kind: o.Kind, Name: o.ID, Owner: executors.Owner(stack, address)})
	}
	return out, ctx.Err()
}

// RemoveOrphans deletes the objects listed.
func (m *Memory) RemoveOrphans(ctx context.Context, orphans []api.Orphan) error {
	for _, or := range orphans {
		scope, address, ok := executors.ParseOwner(or.Owner)
		if !ok {
			return fmt.Errorf("orphan %s: owner %q is not a kiln owner", or.Name, or.Owner)
		}
		if err := m.D.Delete(ctx, or.Kind, memAddress(Action{Stack: scope, Address: address}), or.Name); err != nil {
			return err
		}
	}
	m.written()
	return nil
}

// Console answers one line naming the server object.
func (m *Memory) Console(ctx context.Context, stack, name string, offset, max int64) (ConsoleChunk, error) {
	for _, o := range m.D.Objects() {
		if o.Kind == "server" && o.ID == name {
			text := []byte(fmt.Sprintf("memory driver: console of %s in stack %s\n", o.Address, stack))
			if offset < 0 || offset > int64(len(text)) {
				offset = 0
			}
			return ConsoleChunk{Text: text[offset:], Next: int64(len(text)), Size: int64(len(text))}, ctx.Err()
		}
	}
	return ConsoleChunk{}, fmt.Errorf("no server %s on this host", name)
}

func (m *Memory) stackOf(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stacks[id]
}

func (m *Memory) rememberStack(id, stack string) {
	if id == "" || stack == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stacks == nil {
		m.stacks = map[string]string{}
	}
	m.stacks[id] = stack
}
