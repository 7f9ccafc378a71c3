package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// generateStack writes a template of about n resource instances: one image,
// and per group of ten a network, four volumes, four servers (count = 4, each
// with an address, a volume and user data) and a port forward.
func generateStack(n int) []byte {
	var b strings.Builder
	b.WriteString(`image "base" {
  source = "https://images.example.org/base.qcow2"
}
`)
	for g := 0; g < n/10; g++ {
		fmt.Fprintf(&b, `
network "n%[1]d" {
  cidr = cidrsubnet("10.0.0.0/8", 16, %[1]d)
  nat  = true
}

volume "v%[1]d" {
  count = 4
  size  = "1GiB"
}

server "s%[1]d" {
  count     = 4
  image     = image.base.id
  cpus      = 2
  memory    = "1GiB"
  network "n%[1]d" { address = cidrhost(network.n%[1]d.cidr, 10 + count.index) }
  volumes   = [volume.v%[1]d[count.index].id]
  user_data = yamlencode({ hostname = "s%[1]d-${count.index}" })
}

port_forward "p%[1]d" {
  host_port   = %[2]d
  target      = server.s%[1]d[0].address
  target_port = 22
}
`, g, 10000+g)
	}
	return []byte(b.String())
}

func TestGeneratedStack(t *testing.T) {
	st := mustLoad(t, Bundle{"main.hcl": generateStack(1000)}, Options{})
	if len(st.Resources) != 1+100*10 {
		t.Fatalf("%d resources", len(st.Resources))
	}
	s := res(t, st, "server.s99[3]")
	if s.Computed["address"] != "10.0.99.13" {
		t.Errorf("address %v", s.Computed["address"])
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		src := generateStack(n)
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				st, diags := Load(Bundle{"main.hcl": src}, Options{Stack: "bench"})
				if diags.HasErrors() || len(st.Resources) < n {
					b.Fatal(diags.Error())
				}
			}
			// CPU time as well as wall time: on a shared machine wall time
			// mostly measures the neighbours.
			b.ReportMetric(float64((cpuTime()-start).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/invalid", "testdata/valid/design"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
		for _, file := range files {
			if src, err := os.ReadFile(file); err == nil {
				f.Add(src)
			}
		}
	}
	for _, src := range invalidVariants {
		f.Add([]byte(src))
	}
	f.Add(generateStack(20))
	f.Fuzz(func(t *testing.T, src []byte) {
		b := Bundle{"main.hcl": src, "cloud-init.yaml": []byte("x ${index}")}
		// Lower limits keep every input within the fuzzer's time per input
		// (the limits themselves are what is exercised): at the defaults an
		// input that spends the budget takes about a second, and the fuzzer
		// minimizing one such input after another reports 0 execs/sec for
		// tens of seconds.
		st, diags := Load(b, Options{Stack: "fuzz", Limits: Limits{MaxValues: 10_000, MaxStringBytes: 1 << 20}})
		if st == nil && !diags.HasErrors() {
			t.Fatal("no stack and no error")
		}
		Format(src)
	})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
