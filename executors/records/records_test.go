package records

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestStore: a record written is read back, listed by id and removed; the
// file is where the agent's gc looks for it; ids that cannot name a file
// are refused.
func TestStore(t *testing.T) {
	dir := t.TempDir()
	g, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	net := Record{Kind: "network", ID: "kb-b", Stack: "web", Phys: "network.lan", CIDR: "10.0.0.0/24", DHCP: true,
		Hosts: []Host{{Server: "s", MAC: "52:54:00:00:00:01", IP: "10.0.0.2"}}}
	for _, rec := range []Record{net, {Kind: "network", ID: "kb-a", Stack: "web", Phys: "network.b"}} {
		if err := g.Put(rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, Dir, "network", "kb-b.json")); err != nil {
		t.Fatalf("record file: %v", err)
	}
	got, ok, err := g.Get("network", "kb-b")
	if err != nil || !ok || !reflect.DeepEqual(got, net) {
		t.Fatalf("Get = %+v %v %v, want %+v", got, ok, err, net)
	}
	list, err := g.List("network")
	if err != nil || len(list) != 2 || list[0].ID != "kb-a" {
		t.Fatalf("List = %+v %v, want kb-a then kb-b", list, err)
	}
	if err := g.Del("network", "kb-b"); err != nil {
		t.Fatal(err)
	}
	if err := g.Del("network", "kb-b"); err != nil {
		t.Fatalf("a second Del: %v", err)
	}
	if _, ok, _ := g.Get("network", "kb-b"); ok {
		t.Error("record still there after Del")
	}
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if err := g.Put(Record{Kind: "volume", ID: bad}); err == nil {
			t.Errorf("Put of id %q: no error", bad)
		}
	}
}
