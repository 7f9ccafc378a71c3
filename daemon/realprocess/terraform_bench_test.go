package realprocess

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 13 judges kiln's orchestration cost against Terraform's on the same
// machine in the same run: Terraform applying and destroying as many
// terraform_data resources (built into Terraform, so no provider download
// and no action cost) as noopStack has actions. Terraform is not a kiln
// component: where it is not on PATH these benchmarks are skipped.

// terraformStack is noopStack's counterpart: one terraform_data resource
// per network (its input the same cidrsubnet) and per volume.
func terraformStack(networks, volumes int) string {
	return fmt.Sprintf(`resource "terraform_data" "n" {
  count = %d
  input = cidrsubnet("10.0.0.0/8", 16, count.index)
}

resource "terraform_data" "v" {
  count = %d
  input = "1MiB"
}
`, networks, volumes)
}

// terraform is a Terraform working directory holding terraformStack,
// initialised.
type terraform struct {
	b        *testing.B
	bin, dir string
	env      []string
}

// newTerraform writes the configuration and runs `terraform init`, with
// a HOME and an empty CLI configuration file of its own (no warning about
// a missing ~/.terraformrc), TF_IN_AUTOMATION set and the version check
// off (CHECKPOINT_DISABLE: nothing leaves the machine).
func newTerraform(b *testing.B, networks, volumes int) *terraform {
	bin, err := exec.LookPath("terraform")
	if err != nil {
		b.Skipf("terraform is not on PATH (%v): the comparison with Terraform needs it; it is not a kiln component", err)
	}
	root := b.TempDir()
	rc := filepath.Join(root, "terraformrc")
	dir := filepath.Join(root, "stack")
	if err := os.WriteFile(rc, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(terraformStack(networks, volumes)), 0o644); err != nil {
		b.Fatal(err)
	}
	t := &terraform{b: b, bin: bin, dir: dir, env: append(os.Environ(),
		"HOME="+root, "TF_CLI_CONFIG_FILE="+rc, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1")}
	t.run("init", "-input=false", "-no-color")
	return t
}

// run runs terraform in its directory and says how long it took.
func (t *terraform) run(args ...string) time.Duration {
	cmd := exec.Command(t.bin, args...)
	cmd.Dir, cmd.Env = t.dir, t.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.b.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return time.Since(t0)
}

func (t *terraform) apply() time.Duration {
	return t.run("apply", "-auto-approve", "-input=false", "-no-color")
}

func (t *terraform) destroy() time.Duration {
	return t.run("destroy", "-auto-approve", "-input=false", "-no-color")
}

// BenchmarkTerraform1000 is Terraform on the stack of
// BenchmarkOrchestration1000: apply and destroy of 100 + 900
// terraform_data resources, with Terraform's defaults (-parallelism=10,
// destroy refreshes first).
func BenchmarkTerraform1000(b *testing.B) {
	tf := newTerraform(b, 100, 900)
	var apply, destroy time.Duration
	b.ResetTimer()
	for range b.N {
		apply += tf.apply()
		destroy += tf.destroy()
	}
	b.StopTimer()
	nb := float64(b.N)
	b.ReportMetric(apply.Seconds()/nb, "apply-s")
	b.ReportMetric(destroy.Seconds()/nb, "destroy-s")
}

// BenchmarkOrchestration1000VsTerraform is the goal as a figure:
// kiln on a single node (as in BenchmarkOrchestration1000) and Terraform
// (as in BenchmarkTerraform1000) in the same iteration, turn about (kiln
// apply, Terraform apply, kiln destroy, Terraform destroy) so that both see
// the same load on a shared machine. apply-vs-terraform and
// destroy-vs-terraform are kiln's seconds over Terraform's; the goal is
// 0.25 or less.
func BenchmarkOrchestration1000VsTerraform(b *testing.B) {
	const networks, volumes = 100, 900
	tf := newTerraform(b, networks, volumes) // skipped before kiln starts
	n := startSingle(b, "big.hcl", noopStack(networks, volumes))
	var kApply, kDestroy, tApply, tDestroy time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if out, err := n.run("apply", "big.hcl", "-auto-approve"); err != nil {
			b.Fatalf("kiln apply: %v\n%s", err, out)
		}
		kApply += time.Since(t0)
		tApply += tf.apply()
		t1 := time.Now()
		if out, err := n.run("destroy", "big", "-auto-approve"); err != nil {
			b.Fatalf("kiln destroy: %v\n%s", err, out)
		}
		kDestroy += time.Since(t1)
		tDestroy += tf.destroy()
	}
	b.StopTimer()
	nb := float64(b.N)
	b.ReportMetric(kApply.Seconds()/nb, "kiln-apply-s")
	b.ReportMetric(kDestroy.Seconds()/nb, "kiln-destroy-s")
	b.ReportMetric(tApply.Seconds()/nb, "tf-apply-s")
	b.ReportMetric(tDestroy.Seconds()/nb, "tf-destroy-s")
	b.ReportMetric(kApply.Seconds()/tApply.Seconds(), "apply-vs-terraform")
	b.ReportMetric(kDestroy.Seconds()/tDestroy.Seconds(), "destroy-vs-terraform")
}
