package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/server"
	"github.com/kiln-dev/kiln/internal/netnstest"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// e2eTemplate is the stack of the end-to-end test: a NAT+DHCP network,
// `servers` servers (the second with mem1 of memory) that are ready when
// they answer HTTP, a data volume on the first and a port forward from host
// port 8080 to the first one's port 80.
func e2eTemplate(image, sum string, servers int, mem1 string) string {
	return fmt.Sprintf(`
image "guest" {
  source = %q
  sha256 = %q
}

network "lan" {
  cidr = "10.91.0.0/24"
  nat  = true
  dhcp = true
}

volume "data" {
  size = "64MiB"
}

server "web" {
  count   = %d
  image   = image.guest.id
  cpus    = 1
  memory  = count.index == 1 ? %q : "128MiB"
  volumes = count.index == 0 ? [volume.data.id] : []

  network "lan" {
    address = cidrhost(network.lan.cidr, 10 + count.index)
  }

  ready {
    http_port = 80
    timeout   = "4m"
  }
}

port_forward "http" {
  host_port   = 8080
  target      = server.web[0].address
  target_port = 80
}

output "addresses" {
  value = server.web[*].address
}
`, image, sum, servers, mem1)
}

// opResult is the part of `kiln apply -json` the test reads.
type opResult struct {
	Stack   string `json:"stack"`
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Error   string `json:"error"`
	Actions []struct {
		Address      string  `json:"address"`
		Action       string  `json:"action"`
		Status       string  `json:"status"`
		Error        string  `json:"error"`
		ReadySeconds float64 `json:"ready_seconds"`
	} `json:"actions"`
	Outputs map[string]struct {
		Value any `json:"value"`
	} `json:"outputs"`
}

func parseResult(t *testing.T, out string) opResult {
	t.Helper()
	var r opResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("kiln -json printed no JSON document: %v\n%s", err, out)
	}
	return r
}

// applyJSON runs `kiln apply -auto-approve -json` and checks that the
// operation completed with the given addresses as output.
func applyJSON(t *testing.T, w *workdir, stack string, addrs ...string) opResult {
	t.Helper()
	return applyJSONStatus(t, w, stack, []string{"complete"}, addrs...)
}

// applyJSONStatus is applyJSON with the operation statuses that are
// accepted.
func applyJSONStatus(t *testing.T, w *workdir, stack string, statuses []string, addrs ...string) opResult {
	t.Helper()
	r := parseResult(t, w.must("apply", "-auto-approve", "-json", "-stack", stack, "."))
	if !slices.Contains(statuses, r.Status) || r.Stack != stack || r.Kind != "apply" {
		t.Fatalf("apply: status %q (error %q), stack %q, kind %q; actions %+v", r.Status, r.Error, r.Stack, r.Kind, r.Actions)
	}
	want := make([]any, len(addrs))
	for i, a := range addrs {
		want[i] = a
	}
	if got := r.Outputs["addresses"].Value; !reflect.DeepEqual(got, want) {
		t.Fatalf("output addresses = %#v, want %#v", got, want)
	}
	return r
}

// planNoChanges checks that `kiln plan -detailed-exitcode` finds nothing
// to do.
func planNoChanges(t *testing.T, w *workdir, stack string) {
	t.Helper()
	code, out, errOut := w.run("plan", "-detailed-exitcode", "-stack", stack, ".")
	if code != 0 {
		t.Fatalf("plan after a converged apply: exit %d, want 0 (no changes)\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func hostname(stack, address string) string {
	return strings.ReplaceAll(executors.PhysicalName(stack, address, 63), "_", "-")
}

func TestEndToEnd(t *testing.T) {
	const stack = "e2estack"
	w := newWorkdir(t)
	img, sum := guestImage(t)
	web := func(i int) string { return server.Name(stack, fmt.Sprintf("server.web[%d]", i)) }

	// 1. Two servers, a volume on the first, a port forward to it.
	w.write(e2eTemplate(img, sum, 2, "128MiB"))
	r := applyJSON(t, w, stack, "10.91.0.10", "10.91.0.11")

	// The servers were ready when the apply returned: the first request
	// through the port forward, from a client in a second namespace joined
	// by a veth pair, answers (no polling), and sees the data volume.
	client := netnstest.New(t)
	netnstest.Veth(t, client, "ke2e0", "eth0", "192.168.252.1/30", "192.168.252.2/30")
	body := httpOnce(t, client, "http://192.168.252.1:8080/")
	if !strings.Contains(body, "hostname="+hostname(stack, "server.web[0]")) || !strings.Contains(body, "vdb") {
		t.Fatalf("first answer through the port forward right after apply: %q; want guest 0's hostname and vdb", body)
	}
	t.Logf("guest 0 answered the first request through the port forward: %q", body)
	for _, a := range r.Actions {
		if strings.HasPrefix(a.Address, "server.") && a.ReadySeconds <= 0 {
			t.Errorf("apply -json: %s has no ready_seconds: %+v", a.Address, a)
		}
	}
	checkReadyInStatus(t, w, stack, 2)
	first := observe(t, stack)
	t.Logf("after the first apply: %s", first)
	if !reflect.DeepEqual(first.domains, []string{web(0), web(1)}) || first.running != 2 ||
		len(first.volumes) != 5 || len(first.bridges) != 1 || first.dnsmasq != 1 || len(first.rules) == 0 {
		t.Fatalf("after the first apply: %s; want 2 running domains, 5 volumes (data, and an overlay and a seed per server), 1 bridge, 1 dnsmasq, some rules", first)
	}
	bridge := first.bridges[0]

	// 2. A third server and more memory for the second: converges, and the
	// restarted second server is ready again when the apply returns.
	w.write(e2eTemplate(img, sum, 3, "192MiB"))
	r = applyJSON(t, w, stack, "10.91.0.10", "10.91.0.11", "10.91.0.12")
	acts := map[string]string{}
	for _, a := range r.Actions {
		acts[a.Address] = a.Action + "/" + a.Status
	}
	if acts["server.web[1]"] != "update/done" || acts["server.web[2]"] != "create/done" {
		t.Fatalf("second apply ran %v; want server.web[1] updated and server.web[2] created", acts)
	}
	for _, i := range []int{1, 2} {
		if b := httpOnce(t, nil, fmt.Sprintf("http://10.91.0.1%d/", i)); !strings.Contains(b, "hostname="+hostname(stack, fmt.Sprintf("server.web[%d]", i))) {
			t.Fatalf("server.web[%d] right after the second apply answered %q", i, b)
		}
	}
	planNoChanges(t, w, stack)
	second := observe(t, stack)
	t.Logf("after the second apply: %s", second)
	if !reflect.DeepEqual(second.domains, []string{web(0), web(1), web(2)}) || second.running != 3 || len(second.volumes) != 7 {
		t.Fatalf("after the second apply: %s; want 3 running domains and 7 volumes", second)
	}
	if mem := maxMemoryKiB(t, web(1)); mem != 192<<10 {
		t.Fatalf("%s has %d KiB of memory after the update, want %d", web(1), mem, 192<<10)
	}
	if d := duplicates(second.rules); len(d) > 0 {
		t.Fatalf("duplicate iptables rules: %q", d)
	}

	// 3. A fourth server; kiln is killed with SIGKILL while it creates it.
	// Apply again: converged, nothing twice.
	w.write(e2eTemplate(img, sum, 4, "192MiB"))
	killMidApply(t, w, stack, web(3))
	t.Logf("after the kill: %s", observe(t, stack))
	// The new kiln first finishes the operation the killed one left (its
	// leader resumes it); what is left to do then, if anything, it applies.
	r = applyJSONStatus(t, w, stack, []string{"complete", "no_changes"}, "10.91.0.10", "10.91.0.11", "10.91.0.12", "10.91.0.13")
	t.Logf("apply after the kill: %s", r.Status)
	planNoChanges(t, w, stack)
	third := observe(t, stack)
	t.Logf("after the apply that followed the kill: %s", third)
	if !reflect.DeepEqual(third.domains, []string{web(0), web(1), web(2), web(3)}) || third.running != 4 {
		t.Fatalf("domains after the kill and a new apply: %v (%d running), want exactly %v running", third.domains, third.running, []string{web(0), web(1), web(2), web(3)})
	}
	if len(third.volumes) != 9 || len(duplicates(third.volumes)) > 0 {
		t.Fatalf("volumes after the kill and a new apply: %v, want 9 (data, 4 overlays, 4 seeds)", third.volumes)
	}
	if !reflect.DeepEqual(third.rules, second.rules) {
		t.Fatalf("iptables rules of the stack changed with a fourth server (a duplicate?):\nbefore %q\nafter  %q", second.rules, third.rules)
	}
	if !reflect.DeepEqual(third.bridges, []string{bridge}) || third.dnsmasq != 1 {
		t.Fatalf("after the kill and a new apply: bridges %v, %d dnsmasq; want [%s] and 1", third.bridges, third.dnsmasq, bridge)
	}

	// 4. Destroy leaves nothing.
	r = parseResult(t, w.must("destroy", "-auto-approve", "-json", stack))
	if r.Status != "complete" || r.Kind != "destroy" {
		t.Fatalf("destroy: status %q (error %q); actions %+v", r.Status, r.Error, r.Actions)
	}
	left := observe(t, stack)
	if len(left.domains) != 0 || len(left.volumes) != 0 || len(left.bridges) != 0 || len(left.rules) != 0 || left.dnsmasq != 0 {
		t.Errorf("left after destroy: %s\nrules: %q", left, left.rules)
	}
	filepath.WalkDir(filepath.Join(w.dir, ".kiln"), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if base := filepath.Base(p); strings.Contains(base, stack) || strings.Contains(base, bridge) {
			t.Errorf("file of the stack left under .kiln: %s", p)
		}
		return nil
	})
}

// killMidApply starts an apply, waits until libvirt has the domain it
// makes, and kills kiln with SIGKILL before the apply ends.
func killMidApply(t *testing.T, w *workdir, stack, domain string) {
	t.Helper()
	cmd := w.command("apply", "-auto-approve", "-json", "-stack", stack, ".")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	conn := connect(t)
	defer conn.Close()
	ended := false
	seen := testwait.Until(3*time.Minute, 5*time.Millisecond, func() bool {
		select {
		case <-exited:
			ended = true
			return true
		default:
		}
		d, err := conn.LookupDomainByName(domain)
		if err != nil {
			return false
		}
		d.Free()
		return true
	})
	if ended {
		t.Fatalf("kiln apply ended before %s was defined, so it could not be killed in the middle:\n%s", domain, &out)
	}
	if !seen {
		cmd.Process.Kill()
		<-exited
		t.Fatalf("%s was not defined within 3 minutes of the apply:\n%s", domain, &out)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("kiln apply ended on its own (%v) before the SIGKILL; it was not killed in the middle:\n%s", cmd.ProcessState, &out)
	}
	t.Logf("kiln apply killed with SIGKILL once %s was defined", domain)
}

func maxMemoryKiB(t *testing.T, domain string) uint64 {
	t.Helper()
	conn := connect(t)
	defer conn.Close()
	d, err := conn.LookupDomainByName(domain)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free()
	info, err := d.GetInfo()
	if err != nil {
		t.Fatal(err)
	}
	return info.MaxMem
}

// httpOnce makes one GET of url (from inside ns when it is not nil) and
// returns the body; any error fails the test.
func httpOnce(t *testing.T, ns *netnstest.NS, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	status, body, err := netnstest.Get(ns, client, url)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body
}

// checkReadyInStatus checks that `kiln status -json` says when each of
// the stack's n servers became ready.
func checkReadyInStatus(t *testing.T, w *workdir, stack string, n int) {
	t.Helper()
	var st struct {
		Resources []struct {
			Address      string     `json:"address"`
			Kind         string     `json:"kind"`
			ReadyAt      *time.Time `json:"ready_at"`
			ReadySeconds float64    `json:"ready_seconds"`
		} `json:"resource_list"`
	}
	out := w.must("status", "-json", stack)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	ready := 0
	for _, r := range st.Resources {
		if r.Kind != "server" {
			continue
		}
		if r.ReadyAt == nil || r.ReadyAt.IsZero() || r.ReadySeconds <= 0 {
			t.Errorf("status -json: %s has no ready time: %+v", r.Address, r)
			continue
		}
		ready++
	}
	if ready != n {
		t.Fatalf("status -json: %d servers with a ready time, want %d\n%s", ready, n, out)
	}
}

// notReadyTemplate is one server on a DHCP network whose readiness check
// is check (a ready block's body).
func notReadyTemplate(image, sum, check string) string {
	return fmt.Sprintf(`
image "guest" {
  source = %q
  sha256 = %q
}

network "lan" {
  cidr = "10.92.0.0/24"
  dhcp = true
}

server "web" {
  image  = image.guest.id
  memory = "128MiB"
  network "lan" {}
  ready {
    %s
  }
}

output "addresses" {
  value = [server.web.address]
}
`, image, sum, check)
}

// TestNotReadyThenFixed: a server whose readiness never comes fails the
// apply after its timeout (plus a bounded slack), with the check, the
// domain's state and the console's last lines in the error, the JSON
// and the events; fixing the template and applying again repairs it;
// destroy leaves nothing.
func TestNotReadyThenFixed(t *testing.T) {
	const stack = "e2enotready"
	w := newWorkdir(t)
	img, sum := guestImage(t)
	// 40s: long enough for the guest to boot (and print its ready line)
	// on a loaded CI host.
	w.write(notReadyTemplate(img, sum, `tcp_port = 2222
    timeout  = "40s"`))
	start := time.Now()
	code, out, errOut := w.run("apply", "-auto-approve", "-json", "-stack", stack, ".")
	took := time.Since(start)
	if code == 0 {
		t.Fatalf("apply of a server that never becomes ready succeeded:\n%s", out)
	}
	r := parseResult(t, out)
	var msg string
	for _, a := range r.Actions {
		if a.Address == "server.web" {
			msg = a.Error
		}
	}
	for _, want := range []string{"not ready within 40s", "tcp_port 2222", "domain running", "last lines of the console", "KILN-GUEST-READY"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the failed action's error lacks %q:\n%s\nstderr:\n%s", want, msg, errOut)
		}
	}
	// The image is cached and the network made in seconds; the check's
	// 40s run from the domain's start.
	if took > 40*time.Second+2*time.Minute {
		t.Errorf("the apply failed only after %s (timeout 40s)", took)
	}
	t.Logf("apply failed after %s: %s", took.Round(time.Millisecond), msg)
	events := w.must("events", stack)
	if !strings.Contains(events, "server.web failed on") || !strings.Contains(events, "not ready within 40s") {
		t.Errorf("kiln events does not tell why server.web failed:\n%s", events)
	}

	// Fixed: the re-run adopts the guest (the same domain, not a second
	// one) and it is ready.
	w.write(notReadyTemplate(img, sum, `http_port = 80`))
	r = applyJSON(t, w, stack, "10.92.0.10")
	if b := httpOnce(t, nil, "http://10.92.0.10/"); !strings.Contains(b, "hostname="+hostname(stack, "server.web")) {
		t.Fatalf("right after the repairing apply the guest answered %q", b)
	}
	if got := observe(t, stack); !reflect.DeepEqual(got.domains, []string{server.Name(stack, "server.web")}) || got.running != 1 {
		t.Fatalf("after the repair: %s; want one running domain, %s", got, server.Name(stack, "server.web"))
	}

	r = parseResult(t, w.must("destroy", "-auto-approve", "-json", stack))
	if r.Status != "complete" {
		t.Fatalf("destroy: %q (%s)", r.Status, r.Error)
	}
	if left := observe(t, stack); len(left.domains) != 0 || len(left.volumes) != 0 || len(left.bridges) != 0 || len(left.rules) != 0 || left.dnsmasq != 0 {
		t.Errorf("left after destroy: %s", left)
	}
}
