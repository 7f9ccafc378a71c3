package planner

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sort"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

// Generated stacks: one image, then groups of one network and, per group,
// benchGroup volumes, servers (each on the group's network with its own
// volume) and port forwards (one per server), until n resources.
const benchGroup = 16

const benchSHA = "5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee0"

// genTemplate writes an HCL template of n resources.
func genTemplate(n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "image \"base\" {\n  source = \"/srv/images/base.qcow2\"\n  sha256 = \"%s\"\n}\n", benchSHA)
	count := 1
	for g := 0; count < n; g++ {
		fmt.Fprintf(&b, "\nnetwork \"n%d\" {\n  cidr = \"10.%d.%d.0/24\"\n  nat  = true\n}\n", g, g/256, g%256)
		count++
		for i := 0; i < benchGroup && count < n; i++ {
			fmt.Fprintf(&b, "\nvolume \"v%d_%d\" {\n  size = \"1GiB\"\n}\n", g, i)
			count++
			if count >= n {
				break
			}
			fmt.Fprintf(&b, `
server "s%[1]d_%[2]d" {
  image   = image.base.id
  cpus    = 1
  memory  = "512MiB"
  disk    = "4GiB"
  network "n%[1]d" { address = cidrhost(network.n%[1]d.cidr, %[3]d) }
  volumes = [volume.v%[1]d_%[2]d.id]
}
`, g, i, 10+i)
			count++
			if count >= n {
				break
			}
			fmt.Fprintf(&b, "\nport_forward \"p%d_%d\" {\n  host_port   = %d\n  target      = server.s%d_%d.address\n  target_port = 80\n}\n",
				g, i, 10000+g*benchGroup+i, g, i)
			count++
		}
	}
	return b.Bytes()
}

// genStack builds the same stack as genTemplate in Go, as spec.Load would
// return it against prior.
func genStack(n int, prior spec.Prior) *spec.Stack {
	s := &spec.Stack{Name: "bench"}
	add := func(r *spec.Resource) { s.Resources = append(s.Resources, r) }
	add(&spec.Resource{
		Address: "image.base", Kind: spec.KindImage, Name: "base",
		Attrs:    map[string]any{"source": "/srv/images/base.qcow2", "sha256": benchSHA},
		Computed: map[string]any{"id": ref(prior, "image.base", "id"), "size": ref(prior, "image.base", "size")},
	})
	count := 1
	for g := 0; count < n; g++ {
		netName := fmt.Sprintf("n%d", g)
		netAddr := "network." + netName
		prefix := fmt.Sprintf("10.%d.%d.", g/256, g%256)
		add(&spec.Resource{
			Address: netAddr, Kind: spec.KindNetwork, Name: netName,
			Attrs: map[string]any{"cidr": prefix + "0/24", "nat": true, "dhcp": true},
			Computed: map[string]any{
				"id": ref(prior, netAddr, "id"), "gateway": prefix + "1", "bridge": ref(prior, netAddr, "bridge"),
			},
		})
		count++
		for i := 0; i < benchGroup && count < n; i++ {
			vol := fmt.Sprintf("volume.v%d_%d", g, i)
			add(&spec.Resource{
				Address: vol, Kind: spec.KindVolume, Name: vol[len("volume."):],
				Attrs:    map[string]any{"size": int64(1 << 30), "format": "qcow2"},
				Computed: map[string]any{"id": ref(prior, vol, "id")},
			})
			count++
			if count >= n {
				break
			}
			srv := fmt.Sprintf("server.s%d_%d", g, i)
			ip := fmt.Sprintf("%s%d", prefix, 10+i)
			add(&spec.Resource{
				Address: srv, Kind: spec.KindServer, Name: srv[len("server."):],
				Attrs: map[string]any{
					"image": ref(prior, "image.base", "id"), "cpus": int64(1), "memory": int64(512 << 20),
					"disk":     int64(4 << 30),
					"networks": []any{map[string]any{"name": netName, "address": ip}},
					"volumes":  []any{ref(prior, vol, "id")},
				},
				Computed: map[string]any{
					"id": ref(prior, srv, "id"), "address": ip,
					"addresses": map[string]any{netName: ip}, "mac": ref(prior, srv, "mac"),
				},
				DependsOn: sortedUnique([]string{"image.base", netAddr, vol}),
				AttrRefs:  map[string][]string{"image": {"image.base.id"}, "volumes": {vol + ".id"}},
			})
			count++
			if count >= n {
				break
			}
			pf := fmt.Sprintf("port_forward.p%d_%d", g, i)
			add(&spec.Resource{
				Address: pf, Kind: spec.KindPortForward, Name: pf[len("port_forward."):],
				Attrs: map[string]any{
					"host_port": int64(10000 + g*benchGroup + i), "protocol": "tcp",
					"target": ip, "target_port": int64(80),
				},
				Computed:  map[string]any{"id": ref(prior, pf, "id")},
				DependsOn: []string{srv},
				AttrRefs:  map[string][]string{"target": {srv + ".address"}},
			})
			count++
		}
	}
	sort.Slice(s.Resources, func(i, j int) bool { return s.Resources[i].Address < s.Resources[j].Address })
	return s
}

// genState is genStack(n) after apply.
func genState(n int) *State {
	first := genStack(n, nil)
	prior := spec.Prior{}
	for _, r := range first.Resources {
		comp := make(map[string]any, len(r.Computed))
		for k, v := range r.Computed {
			if spec.IsUnknown(v) {
				v = r.Address + "#" + k
			}
			comp[k] = v
		}
		prior[r.Address] = comp
	}
	second := genStack(n, prior)
	st := &State{Stack: "bench", Serial: 1}
	for _, r := range second.Resources {
		st.Resources = append(st.Resources, ResourceState{
			Address: r.Address, Kind: r.Kind, Attrs: r.Attrs, Computed: prior[r.Address], DependsOn: r.DependsOn,
		})
	}
	return st
}

var benchSizes = []int{1000, 10000}

// reportHeap reports the live heap (MiB) held while the result of one run of
// fn is reachable.
func reportHeap(b *testing.B, fn func() any) {
	b.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	keep := fn()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(keep)
	live := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	b.ReportMetric(live, "live-MiB")
}

// BenchmarkPlan is the figure of the issue: parse, evaluate, validate and plan
// a generated template (spec.Load then Plan against an empty state).
func BenchmarkPlan(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			bundle := spec.Bundle{"main.hcl": genTemplate(n)}
			opts := spec.Options{Stack: "bench"}
			if _, diags := spec.Load(bundle, opts); diags.HasErrors() {
				b.Fatalf("spec.Load: %s", diags.Error())
			}
			run := func() any {
				st, diags := spec.Load(bundle, opts)
				if diags.HasErrors() {
					b.Fatal(diags.Error())
				}
				res, err := Plan(st, nil)
				if err != nil {
					b.Fatal(err)
				}
				return res
			}
			b.ReportAllocs()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			for b.Loop() {
				run()
			}
			runtime.ReadMemStats(&m1)
			// After the loop: b.Loop resets the timer, which drops metrics.
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/op")
			reportHeap(b, run)
		})
	}
}

// BenchmarkPlanOnly measures Plan alone on stacks built in Go: against an
// empty state (all creates) and against the applied state (all no-ops), and
// the rendering of the all-creates plan.
func BenchmarkPlanOnly(b *testing.B) {
	for _, n := range benchSizes {
		desired := genStack(n, nil)
		state := genState(n)
		again := genStack(n, state.Prior())
		for _, bc := range []struct {
			name    string
			desired *spec.Stack
			actual  *State
		}{
			{"create", desired, nil},
			{"no-op", again, state},
			{"destroy", nil, state},
		} {
			b.Run(fmt.Sprintf("%s/resources=%d", bc.name, n), func(b *testing.B) {
				run := func() any {
					res, err := Plan(bc.desired, bc.actual)
					if err != nil {
						b.Fatal(err)
					}
					return res
				}
				b.ReportAllocs()
				for b.Loop() {
					run()
				}
				reportHeap(b, run)
			})
		}
		res, err := Plan(desired, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("render-text/resources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := RenderText(io.Discard, res, TextOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("render-json/resources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := RenderJSON(io.Discard, res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestGeneratedStacks checks the generators the benchmarks use: the sizes are
// exact, the Go-built plan is all creates in a valid order, and planning the
// applied state again changes nothing.
func TestGeneratedStacks(t *testing.T) {
	for _, n := range []int{1, 2, 50, 1000} {
		s := genStack(n, nil)
		if len(s.Resources) != n {
			t.Fatalf("genStack(%d) has %d resources", n, len(s.Resources))
		}
		res, err := Plan(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, res)
		if got := res.Summary().Create; got != n {
			t.Errorf("n=%d: %d creates", n, got)
		}
		st := genState(n)
		res, err = Plan(genStack(n, st.Prior()), st)
		if err != nil {
			t.Fatal(err)
		}
		if res.HasChanges() {
			t.Errorf("n=%d: re-plan of the applied state has changes: %+v", n, res.Summary())
		}
		if got := bytes.Count(genTemplate(n), []byte("\n}\n")); got != n {
			t.Errorf("genTemplate(%d) has %d blocks", n, got)
		}
	}
}
