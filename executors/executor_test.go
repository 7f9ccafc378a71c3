package executors

import (
	"strings"
	"testing"
)

func TestPhysicalName(t *testing.T) {
	tests := []struct {
		stack, address string
		max            int
		want           string
	}{
		{"ci-1", "server.web[0]", 63, "ci-1-server-web-0"},
		{"Demo", "network.lan", 63, "demo-network-lan"},
		{"demo", "network.lan", 16, "demo-network-lan"},
		{"demo", "network.lan", 12, "demo-" + ShortHash("demo", "network.lan")},
		{"a", `volume.data["x/y z"]`, 63, "a-volume-data-x-y-z"},
		{"stack", "x", 3, "stack-x"},
		{"stackname", "x", 3, "s-" + ShortHash("stackname", "x")},
	}
	for _, tt := range tests {
		got := PhysicalName(tt.stack, tt.address, tt.max)
		if got != tt.want {
			t.Errorf("PhysicalName(%q, %q, %d) = %q, want %q", tt.stack, tt.address, tt.max, got, tt.want)
		}
		max := tt.max
		if max < 8 {
			max = 8
		}
		if len(got) > max {
			t.Errorf("PhysicalName(%q, %q, %d) = %q is longer than %d", tt.stack, tt.address, tt.max, got, max)
		}
		if again := PhysicalName(tt.stack, tt.address, tt.max); again != got {
			t.Errorf("PhysicalName not deterministic: %q then %q", got, again)
		}
	}
}

func TestPhysicalNameTruncatedDiffer(t *testing.T) {
	a := PhysicalName("a-very-long-stack-name", "network.lan", 15)
	b := PhysicalName("a-very-long-stack-name", "network.wan", 15)
	if a == b {
		t.Fatalf("truncated names collide: %q", a)
	}
	if !strings.HasPrefix(a, "a-very-l") {
		t.Errorf("truncated name %q lost its readable prefix", a)
	}
}

func TestOwner(t *testing.T) {
	tag := Owner("ci-1", "network.lan")
	if tag != "kiln:ci-1/network.lan" {
		t.Fatalf("Owner = %q", tag)
	}
	tests := []struct {
		tag, stack, address string
		ok                  bool
	}{
		{tag, "ci-1", "network.lan", true},
		{"kiln:s/server.web[0]", "s", "server.web[0]", true},
		{"kiln:", "", "", false},
		{"kiln:s", "", "", false},
		{"other:s/a", "", "", false},
	}
	for _, tt := range tests {
		s, a, ok := ParseOwner(tt.tag)
		if s != tt.stack || a != tt.address || ok != tt.ok {
			t.Errorf("ParseOwner(%q) = %q, %q, %v", tt.tag, s, a, ok)
		}
	}
}

func TestScope(t *testing.T) {
	for _, tt := range []struct{ project, stack, want string }{
		{"", "web", "web"},
		{"default", "web", "web"},
		{"p1", "web", "p1/web"},
		{"p1-x", "y", "p1-x/y"},
		{"A/b", "web", "0" + "412f62" + "/web"},
		{"x.y", "web", "0" + "782e79" + "/web"},
	} {
		if got := Scope(tt.project, tt.stack); got != tt.want {
			t.Errorf("Scope(%q, %q) = %q, want %q", tt.project, tt.stack, got, tt.want)
		}
	}
	if p, s := SplitScope("p1/web"); p != "p1" || s != "web" {
		t.Errorf("SplitScope(p1/web) = %q, %q", p, s)
	}
	if p, s := SplitScope("web"); p != "default" || s != "web" {
		t.Errorf("SplitScope(web) = %q, %q", p, s)
	}
}

func TestParseOwnerProjects(t *testing.T) {
	for _, tt := range []struct {
		tag, scope, address string
		ok                  bool
	}{
		// The form of kiln versions without projects: the default project.
		{"kiln:web/server.a", "web", "server.a", true},
		{`kiln:web/volume.d["x/y"]`, "web", `volume.d["x/y"]`, true},
		{`kiln:web/volume.d["x/y/z"]`, "web", `volume.d["x/y/z"]`, true},
		{"kiln:web/server.a~1a2b3c4d", "web", "server.a~1a2b3c4d", true},
		// Another project's.
		{"kiln:p1/web/server.a", "p1/web", "server.a", true},
		{`kiln:p1/web/volume.d["x/y"]`, "p1/web", `volume.d["x/y"]`, true},
		{"kiln:0412f62/web/network.lan", "0412f62/web", "network.lan", true},
		{"kiln:p1/web/", "", "", false},
		{"kiln:web/x", "", "", false},
		{"kiln:p1.x/web/server.a", "", "", false},
	} {
		s, a, ok := ParseOwner(tt.tag)
		if ok != tt.ok || (ok && (s != tt.scope || a != tt.address)) {
			t.Errorf("ParseOwner(%q) = %q, %q, %v; want %q, %q, %v", tt.tag, s, a, ok, tt.scope, tt.address, tt.ok)
		}
	}
	// Owner and ParseOwner round-trip for every project and address form.
	for _, project := range []string{"default", "p1", "p1-web", "Weird/Name.x"} {
		for _, address := range []string{"server.a", `server.a["k/v"]`, "network.lan~0011aabb", `volume.d["a.b/c"]`} {
			scope := Scope(project, "web")
			s, a, ok := ParseOwner(Owner(scope, address))
			if !ok || s != scope || a != address {
				t.Errorf("ParseOwner(Owner(%q, %q)) = %q, %q, %v", scope, address, s, a, ok)
			}
		}
	}
}

// names is every (project, stack, address) the collision tests try: the
// same stack in two projects, a default-project stack whose name holds a
// '-' that reads like another project's prefix, and projects whose names
// read alike once joined with their stack.
var names = []struct{ project, stack, address string }{
	{"default", "web", "server.web[0]"},
	{"p1", "web", "server.web[0]"},
	{"p2", "web", "server.web[0]"},
	{"default", "p1-web", "server.web[0]"},
	{"p1-web", "server", "server.web[0]"},
	{"p1", "web-server", "server.web[0]"},
	{"default", "p1-web-server", "server.web[0]"},
	{"p1-x", "y", "server.web[0]"},
	{"p1", "x-y", "server.web[0]"},
	{"p1", "web", "network.lan"},
	{"p2", "web", "network.lan"},
	{"default", "p1-web", "network.lan"},
	{"a-very-long-project-name-indeed", "a-very-long-stack-name", "network.lan"},
	{"a-very-long-project-name-indeed", "a-very-long-stack-name", "network.wan"},
	{"a-very-long-project-name-indeed-2", "a-very-long-stack-name", "network.lan"},
}

func TestPhysicalNameProjectsNeverCollide(t *testing.T) {
	for _, max := range []int{8, 12, 15 - 3, 53, 63, 64} {
		seen := map[string]string{}
		for _, n := range names {
			scope := Scope(n.project, n.stack)
			got := PhysicalName(scope, n.address, max)
			who := n.project + "/" + n.stack + "/" + n.address
			if prev, ok := seen[got]; ok {
				t.Errorf("max %d: %s and %s both named %q", max, prev, who, got)
			}
			seen[got] = who
			if len(got) > max && max >= 8 {
				t.Errorf("max %d: %s named %q, longer than %d", max, who, got, max)
			}
			if n.project == "default" {
				if strings.Contains(got, ".") {
					t.Errorf("default project name %q holds a '.'", got)
				}
				// The default project keeps the names of kiln versions
				// without projects.
				if want := PhysicalName(n.stack, n.address, max); got != want {
					t.Errorf("default project: %q, want %q", got, want)
				}
			} else if !strings.Contains(got, ".") {
				t.Errorf("max %d: %s named %q, with no '.'", max, who, got)
			}
			if PhysicalName(scope, n.address, max) != got {
				t.Errorf("PhysicalName not deterministic for %s", who)
			}
		}
	}
	if got := PhysicalName("p1/web", "server.web[0]", 63); got != "p1-web-server-web-0."+ProjectHash("p1/web", "server.web[0]", 12) {
		t.Errorf("PhysicalName(p1/web, server.web[0], 63) = %q", got)
	}
}

func TestOwnerProjectsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range names {
		tag := Owner(Scope(n.project, n.stack), n.address)
		if seen[tag] {
			t.Errorf("owner tag %q made twice", tag)
		}
		seen[tag] = true
	}
	if got := Owner(Scope("default", "web"), "server.a"); got != "kiln:web/server.a" {
		t.Errorf("default project owner %q, want the tag of kiln versions without projects", got)
	}
	if got := Owner(Scope("p1", "web"), "server.a"); got != "kiln:p1/web/server.a" {
		t.Errorf("project owner %q", got)
	}
}
