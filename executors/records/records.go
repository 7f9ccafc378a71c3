// Package records is the real executors' own bookkeeping on a host: one
// JSON file per instance they made, Dir/<kind>/<id>.json under the agent's
// data directory, written before the object is made and removed after it
// is deleted.
//
// A record says which stack and physical address an id belongs to (physical
// names are shortened and sanitized, so they cannot always be read back), and
// for a network its configuration and the fixed DHCP hosts of the servers on
// it. All of a stack's resources are placed on one agent, so the servers of a
// network are created on the host that holds the network's record.
package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Dir is the directory of the records under the agent's data directory.
const Dir = "kiln-objects"

// Record is one instance made by the real executors.
type Record struct {
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	Stack string `json:"stack"`
	// Phys is the address the executors know the instance by: the resource
	// address, plus "~hash" for the create half of a replace.
	Phys string `json:"address"`

	// Network only.
	CIDR  string   `json:"cidr,omitempty"`
	NAT   bool     `json:"nat,omitempty"`
	DHCP  bool     `json:"dhcp,omitempty"`
	DNS   []string `json:"dns,omitempty"`
	Hosts []Host   `json:"hosts,omitempty"`

	// Server only: the names of its root overlay and seed in kiln-volumes.
	Files []string `json:"files,omitempty"`
}

// Host is one server NIC on a network.
type Host struct {
	Server   string `json:"server"` // the server's id (domain name)
	MAC      string `json:"mac"`
	IP       string `json:"ip"`
	Hostname string `json:"hostname,omitempty"`
}

// Store is the records of one data directory.
type Store struct {
	dir string
	mu  sync.Mutex
}

// Open opens (making it when missing) the records of dataDir.
func Open(dataDir string) (*Store, error) {
	dir := filepath.Join(dataDir, Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the directory that holds the records.
func (g *Store) Dir() string { return g.dir }

// Path is the file of the record of kind and id.
func (g *Store) Path(kind, id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return "", fmt.Errorf("registry: %s id %q cannot name a file", kind, id)
	}
	return filepath.Join(g.dir, kind, id+".json"), nil
}

// Get reads the record of kind and id; ok is false when there is none.
func (g *Store) Get(kind, id string) (_ Record, ok bool, _ error) {
	p, err := g.Path(kind, id)
	if err != nil {
		return Record{}, false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return read(p)
}

func read(p string) (Record, bool, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("registry: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, false, fmt.Errorf("registry: %s: %w", p, err)
	}
	return rec, true, nil
}

// Put writes a record (atomically: a temporary file renamed).
func (g *Store) Put(rec Record) error {
	p, err := g.Path(rec.Kind, rec.ID)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// Del removes the record of kind and id; a missing one is no error.
func (g *Store) Del(kind, id string) error {
	p, err := g.Path(kind, id)
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

// List returns every record of a kind, sorted by id.
func (g *Store) List(kind string) ([]Record, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	entries, err := os.ReadDir(filepath.Join(g.dir, kind))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var out []Record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec, ok, err := read(filepath.Join(g.dir, kind, e.Name()))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
