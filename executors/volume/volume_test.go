package volume_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/internal/libvirttest"
)

func TestMain(m *testing.M) { os.Exit(libvirttest.Main(m)) }

func newDriver(t *testing.T) *volume.Driver {
	t.Helper()
	d, err := volume.New(libvirttest.Conn(t), libvirttest.Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestName(t *testing.T) {
	for _, tc := range []struct{ stack, address, format, want string }{
		{"ci-1234", "volume.data[0]", "qcow2", "kiln_ci-1234_volume-data-0.qcow2"},
		{"Web_App", "volume.logs", "raw", "kiln_web-app_volume-logs.raw"},
	} {
		if got := volume.Name(tc.stack, tc.address, tc.format); got != tc.want {
			t.Errorf("Name(%q, %q, %q) = %q, want %q", tc.stack, tc.address, tc.format, got, tc.want)
		}
	}
	long := volume.Name(strings.Repeat("s", 150), strings.Repeat("a", 150), "qcow2")
	if len(long) > 210 || long == volume.Name(strings.Repeat("s", 150), strings.Repeat("a", 151), "qcow2") {
		t.Errorf("long names are not cut and told apart: %q", long)
	}
}

func TestLifecycle(t *testing.T) {
	for _, format := range []string{"qcow2", "raw"} {
		t.Run(format, func(t *testing.T) {
			ctx := context.Background()
			d := newDriver(t)
			spec := volume.Spec{Stack: "s1", Address: "volume.data[0]", Size: 64 << 20, Format: format}

			if _, err := d.Read(ctx, spec.Stack, spec.Address); !errors.Is(err, executors.ErrNotFound) {
				t.Fatalf("Read before create: err = %v, want ErrNotFound", err)
			}
			v, err := d.Create(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if v.Size != spec.Size || v.Format != format || v.Name != volume.Name("s1", "volume.data[0]", format) {
				t.Fatalf("created %+v", v)
			}
			if fi, err := os.Stat(v.Path); err != nil || (format == "raw" && fi.Size() != spec.Size) {
				t.Fatalf("volume file %s: %v %v", v.Path, fi, err)
			}
			// A repeated create adopts the volume.
			again, err := d.Create(ctx, spec)
			if err != nil || again != v {
				t.Fatalf("second Create = %+v, %v; want %+v", again, err, v)
			}
			// Grow in place.
			spec.Size = 96 << 20
			grown, err := d.Update(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if grown.Size != spec.Size || grown.Path != v.Path {
				t.Fatalf("after grow: %+v", grown)
			}
			read, err := d.Read(ctx, spec.Stack, spec.Address)
			if err != nil || read.Size != spec.Size {
				t.Fatalf("Read after grow = %+v, %v", read, err)
			}
			// Shrinking is refused and changes nothing.
			spec.Size = 32 << 20
			if _, err := d.Update(ctx, spec); !errors.Is(err, volume.ErrShrink) {
				t.Fatalf("shrink: err = %v, want ErrShrink", err)
			}
			if read, _ := d.Read(ctx, spec.Stack, spec.Address); read.Size != 96<<20 {
				t.Fatalf("size after refused shrink = %d", read.Size)
			}
			list, err := d.List(ctx)
			if err != nil || len(list) != 1 || list[0].Name != v.Name || list[0].Stack != "s1" || list[0].Address != "volume-data-0" {
				t.Fatalf("List = %+v, %v", list, err)
			}
			// Delete twice: both succeed, nothing is left.
			for i := 0; i < 2; i++ {
				if err := d.Delete(ctx, spec.Stack, spec.Address); err != nil {
					t.Fatalf("Delete #%d: %v", i+1, err)
				}
			}
			if _, err := d.Read(ctx, spec.Stack, spec.Address); !errors.Is(err, executors.ErrNotFound) {
				t.Fatalf("Read after delete: err = %v", err)
			}
			if _, err := os.Stat(v.Path); !os.IsNotExist(err) {
				t.Fatalf("file %s still there: %v", v.Path, err)
			}
		})
	}
}

// A volume whose file was removed behind libvirt's back reads as absent and
// deletes cleanly.
func TestRemovedBehindBack(t *testing.T) {
	ctx := context.Background()
	d := newDriver(t)
	v, err := d.Create(ctx, volume.Spec{Stack: "s2", Address: "volume.gone", Size: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(v.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(ctx, "s2", "volume.gone"); !errors.Is(err, executors.ErrNotFound) {
		t.Fatalf("Read: err = %v, want ErrNotFound", err)
	}
	if err := d.Delete(ctx, "s2", "volume.gone"); err != nil {
		t.Fatal(err)
	}
}

// TestNameProjects: a volume of one stack name in two projects, or in a
// project and in a default-project stack whose name holds the project's
// prefix, never shares a file; the default project keeps its names.
func TestNameProjects(t *testing.T) {
	seen := map[string]string{}
	for _, n := range []struct{ project, stack, address string }{
		{"default", "web", "volume.data[0]"},
		{"p1", "web", "volume.data[0]"},
		{"p2", "web", "volume.data[0]"},
		{"default", "p1-web", "volume.data[0]"},
		{"p1_web", "x", "volume.data[0]"},
		{"p1", "web_x", "volume.data[0]"},
		{"p1-web", "x", "volume.data[0]"},
		{"p1", "web-x", "volume.data[0]"},
		{"p1", "web", "server.data[0]"},
		{strings.Repeat("p", 120), strings.Repeat("s", 100), "volume.data[0]"},
		{strings.Repeat("p", 120) + "q", strings.Repeat("s", 100), "volume.data[0]"},
	} {
		scope := executors.Scope(n.project, n.stack)
		for _, name := range []string{volume.Name(scope, n.address, volume.QCOW2), volume.BaseName(scope, n.address) + "-seed.iso"} {
			who := n.project + "/" + n.stack + "/" + n.address
			if prev, ok := seen[name]; ok {
				t.Errorf("%s and %s both make %q", prev, who, name)
			}
			seen[name] = who
			if len(name) > 255 {
				t.Errorf("%s: name %q longer than 255", who, name)
			}
		}
	}
	if got := volume.Name(executors.Scope("default", "ci-1234"), "volume.data[0]", "qcow2"); got != "kiln_ci-1234_volume-data-0.qcow2" {
		t.Errorf("default project volume %q", got)
	}
	if got := volume.Name(executors.Scope("p1", "web"), "volume.data[0]", "qcow2"); got != "kiln_p1_web_volume-data-0-"+executors.ProjectHash("p1/web", "volume.data[0]", 12)+".qcow2" {
		t.Errorf("project volume %q", got)
	}
}
