package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/kiln-dev/kiln/executors/network"
)

// RegistryDir is the directory, under the agent's data directory, of the
// real drivers' own records: one JSON file per instance they made,
// RegistryDir/<kind>/<id>.json, written before the object is made and
// removed after it is deleted.
//
// A record says which stack and physical address an id belongs to (physical
// names are shortened and sanitized, so they cannot always be read back), and
// for a network its configuration and the fixed DHCP hosts of the servers on
// it. All of a stack's resources are placed on one agent, so the servers of a
// network are created on the host that holds the network's record.
const RegistryDir = "kiln-objects"

// record is one instance made by the real drivers.
type record struct {
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	Stack string `json:"stack"`
	// Phys is the address the executors know the instance by: the resource
	// address, plus "~hash" for the create half of a replace.
	Phys string `json:"address"`

	// Network only.
	CIDR  string      `json:"cidr,omitempty"`
	NAT   bool        `json:"nat,omitempty"`
	DHCP  bool        `json:"dhcp,omitempty"`
	DNS   []string    `json:"dns,omitempty"`
	Hosts []hostEntry `json:"hosts,omitempty"`

	// Server only: the names of its root overlay and seed in kiln-volumes.
	Files []string `json:"files,omitempty"`
}

// hostEntry is one server NIC on a network.
type hostEntry struct {
	Server   string `json:"server"` // the server's id (domain name)
	MAC      string `json:"mac"`
	IP       string `json:"ip"`
	Hostname string `json:"hostname,omitempty"`
}

func (rec record) netSpec() network.Spec {
	s := network.Spec{Stack: rec.Stack, Address: rec.Phys, CIDR: rec.CIDR, NAT: rec.NAT, DHCP: rec.DHCP, DNS: rec.DNS}
	for _, h := range rec.Hosts {
		s.Hosts = append(s.Hosts, network.Host{MAC: h.MAC, IP: h.IP, Hostname: h.Hostname})
	}
	return s
}

type registry struct {
	dir string
	mu  sync.Mutex
}

func openRegistry(dataDir string) (*registry, error) {
	dir := filepath.Join(dataDir, RegistryDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &registry{dir: dir}, nil
}

func (g *registry) path(kind, id string) (string, error) {
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return "", fmt.Errorf("registry: %s id %q cannot name a file", kind, id)
	}
	return filepath.Join(g.dir, kind, id+".json"), nil
}

func (g *registry) get(kind, id string) (record, bool, error) {
	p, err := g.path(kind, id)
	if err != nil {
		return record{}, false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return readRecord(p)
}

func readRecord(p string) (record, bool, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("registry: %w", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, false, fmt.Errorf("registry: %s: %w", p, err)
	}
	return rec, true, nil
}

func (g *registry) put(rec record) error {
	p, err := g.path(rec.Kind, rec.ID)
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

func (g *registry) del(kind, id string) error {
	p, err := g.path(kind, id)
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

// list returns every record of a kind, sorted by id.
func (g *registry) list(kind string) ([]record, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	entries, err := os.ReadDir(filepath.Join(g.dir, kind))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	var out []record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec, ok, err := readRecord(filepath.Join(g.dir, kind, e.Name()))
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

// gateway is a network's gateway address ("" when its cidr is bad).
func (rec record) gateway() string {
	gw, err := network.Gateway(rec.CIDR)
	if err != nil {
		return ""
	}
	return gw.Addr().String()
}
