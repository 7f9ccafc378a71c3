package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func mustLoad(t *testing.T, b Bundle, opts Options) *Stack {
	t.Helper()
	if opts.Stack == "" {
		opts.Stack = "test"
	}
	st, diags := Load(b, opts)
	if diags.HasErrors() {
		var buf bytes.Buffer
		_ = WriteDiagnostics(&buf, diags, b, opts, 0, false)
		t.Fatalf("unexpected errors:\n%s", buf.String())
	}
	return st
}

func loadErrors(t *testing.T, b Bundle, opts Options) string {
	t.Helper()
	if opts.Stack == "" {
		opts.Stack = "test"
	}
	st, diags := Load(b, opts)
	if st != nil || !diags.HasErrors() {
		t.Fatalf("want errors, got none")
	}
	var s []string
	for _, d := range diags {
		s = append(s, DiagnosticString(d))
	}
	return strings.Join(s, "\n")
}

func res(t *testing.T, st *Stack, addr string) *Resource {
	t.Helper()
	r := st.Resource(addr)
	if r == nil {
		var all []string
		for _, r := range st.Resources {
			all = append(all, r.Address)
		}
		t.Fatalf("no resource %s; have %v", addr, all)
	}
	return r
}

func designBundle(t *testing.T) Bundle {
	b := Bundle{}
	for _, n := range []string{"main.hcl", "cloud-init.yaml"} {
		src, err := os.ReadFile(filepath.Join("testdata/valid/design", n))
		if err != nil {
			t.Fatal(err)
		}
		b[n] = src
	}
	return b
}

const image = `
image "base" {
  source = "/var/lib/images/base.qcow2"
}
`

func TestDesignExample(t *testing.T) {
	st := mustLoad(t, designBundle(t), Options{Stack: "demo"})
	var addrs []string
	for _, r := range st.Resources {
		addrs = append(addrs, r.Address)
	}
	want := []string{"image.base", "network.lan", "port_forward.http", "server.web[0]", "server.web[1]", "volume.data[0]", "volume.data[1]"}
	if !reflect.DeepEqual(addrs, want) {
		t.Fatalf("addresses %v, want %v", addrs, want)
	}
	web1 := res(t, st, "server.web[1]")
	checks := []struct {
		name      string
		got, want any
	}{
		{"web1 memory", web1.Attrs["memory"], int64(512 << 20)},
		{"web1 disk", web1.Attrs["disk"], int64(4 << 30)},
		{"web1 cpus", web1.Attrs["cpus"], int64(1)},
		{"web1 image", web1.Attrs["image"], Unknown{}},
		{"web1 networks", web1.Attrs["networks"], []any{map[string]any{"name": "lan", "address": "10.20.0.11"}}},
		{"web1 volumes", web1.Attrs["volumes"], []any{Unknown{}}},
		{"web1 user_data", web1.Attrs["user_data"], "#cloud-config\nhostname: web-1\n"},
		{"web1 address", web1.Computed["address"], "10.20.0.11"},
		{"web1 addresses", web1.Computed["addresses"], map[string]any{"lan": "10.20.0.11"}},
		{"web1 id", web1.Computed["id"], Unknown{}},
		{"web1 key", web1.Key, 1},
		{"web1 depends", web1.DependsOn, []string{"image.base", "network.lan", "volume.data[1]"}},
		{"web1 refs", web1.AttrRefs, map[string][]string{"image": {"image.base.id"}, "volumes": {"volume.data[1].id"}}},
		{"gateway", res(t, st, "network.lan").Computed["gateway"], "10.20.0.1"},
		{"dhcp", res(t, st, "network.lan").Attrs["dhcp"], true},
		{"volume size", res(t, st, "volume.data[0]").Attrs["size"], int64(2 << 30)},
		{"volume format default", res(t, st, "volume.data[0]").Attrs["format"], "qcow2"},
		{"pf target", res(t, st, "port_forward.http").Attrs["target"], "10.20.0.10"},
		{"pf protocol", res(t, st, "port_forward.http").Attrs["protocol"], "tcp"},
		{"pf depends", res(t, st, "port_forward.http").DependsOn, []string{"server.web[0]"}},
		{"pf refs", res(t, st, "port_forward.http").AttrRefs["target"], []string{"server.web[0].address"}},
		{"output", st.Outputs["web_addresses"].Value, []any{"10.20.0.10", "10.20.0.11"}},
		{"param", st.Params["web_count"].Value, int64(2)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestPriorAndUnknowns(t *testing.T) {
	b := Bundle{"main.hcl": []byte(image + `
volume "data" {
  size = "1G"
}
server "web" {
  image   = image.base.id
  volumes = [volume.data.id]
}
output "addr" { value = server.web.address }
`)}
	st := mustLoad(t, b, Options{})
	if got := res(t, st, "server.web").Computed["address"]; got != (Unknown{}) {
		t.Errorf("address without network block = %#v, want Unknown", got)
	}
	if !IsUnknown(st.Outputs["addr"].Value) {
		t.Errorf("output should be unknown")
	}
	prior := Prior{
		"image.base":  {"id": "img-1", "size": int64(1 << 30)},
		"volume.data": {"id": "vol-1"},
		"server.web":  {"id": "srv-1", "address": "192.168.1.5", "mac": "52:54:00:00:00:01"},
	}
	st = mustLoad(t, b, Options{Prior: prior})
	web := res(t, st, "server.web")
	if web.Attrs["image"] != "img-1" || !reflect.DeepEqual(web.Attrs["volumes"], []any{"vol-1"}) {
		t.Errorf("attrs from prior: %#v", web.Attrs)
	}
	if web.Computed["mac"] != "52:54:00:00:00:01" || st.Outputs["addr"].Value != "192.168.1.5" {
		t.Errorf("computed from prior: %#v, output %#v", web.Computed, st.Outputs["addr"].Value)
	}
	if !reflect.DeepEqual(web.AttrRefs, map[string][]string{"image": {"image.base.id"}, "volumes": {"volume.data.id"}}) {
		t.Errorf("AttrRefs %v", web.AttrRefs)
	}
	if res(t, st, "image.base").Computed["size"] != int64(1<<30) {
		t.Errorf("image size from prior")
	}
}

func TestForEachAndDependsOn(t *testing.T) {
	b := Bundle{"main.hcl": []byte(image + `
param "disks" {
  type    = map(string)
  default = { db = "10GiB", logs = "1.5GiB", spare = "1GiB" }
}
volume "v" {
  for_each = param.disks
  size     = each.value
}
server "db" {
  image      = image.base.id
  volumes    = [volume.v["db"].id]
  depends_on = [volume.v]
  lifecycle {
    prevent_destroy       = true
    create_before_destroy = true
    ignore_changes        = [user_data, volumes]
  }
}
server "w" {
  for_each = toset(["a", "b"])
  image    = image.base.id
  volumes  = [volume.v[each.key == "a" ? "spare" : "logs"].id]
}
`)}
	st := mustLoad(t, b, Options{})
	if got := res(t, st, `volume.v["logs"]`).Attrs["size"]; got != int64(3<<29) {
		t.Errorf("1.5GiB = %v", got)
	}
	if k := res(t, st, `volume.v["db"]`).Key; k != "db" {
		t.Errorf("key %v", k)
	}
	db := res(t, st, "server.db")
	if !reflect.DeepEqual(db.DependsOn, []string{"image.base", `volume.v["db"]`, `volume.v["logs"]`, `volume.v["spare"]`}) {
		t.Errorf("depends_on: %v", db.DependsOn)
	}
	if !db.Lifecycle.PreventDestroy || !db.Lifecycle.CreateBeforeDestroy || !reflect.DeepEqual(db.Lifecycle.IgnoreChanges, []string{"user_data", "volumes"}) {
		t.Errorf("lifecycle %+v", db.Lifecycle)
	}
	// a dynamic key depends only on the instance actually used
	if got := res(t, st, `server.w["b"]`).DependsOn; !reflect.DeepEqual(got, []string{"image.base", `volume.v["logs"]`}) {
		t.Errorf(`server.w["b"] depends on %v`, got)
	}
}

func TestServerReady(t *testing.T) {
	cases := []struct {
		name  string
		ready string // the body of the ready block; "" for no block
		want  any    // Attrs["ready"] of server.web[1]; nil for no key
	}{
		{"none", "", nil},
		{"tcp", "tcp_port = 22", map[string]any{"tcp_port": int64(22), "timeout": int64(300)}},
		{"http default path", "http_port = 80", map[string]any{"http_port": int64(80), "http_path": "/", "timeout": int64(300)}},
		{"http", `http_port = 8080
    http_path = "/healthz?full=1"
    timeout   = "1h30m"`, map[string]any{"http_port": int64(8080), "http_path": "/healthz?full=1", "timeout": int64(5400)}},
		{"console", `console = "^login: "
    timeout = "90s"`, map[string]any{"console": "^login: ", "timeout": int64(90)}},
		{"signal", "signal = true", map[string]any{"signal": true, "timeout": int64(300)}},
		{"bounds", `signal = true
    timeout = "24h"`, map[string]any{"signal": true, "timeout": int64(86400)}},
		{"count.index and params", `tcp_port = param.port + count.index
    timeout  = "${param.minutes + count.index}m"`, map[string]any{"tcp_port": int64(2223), "timeout": int64(180)}},
		{"null is not set", `tcp_port  = 22
    http_port = null
    timeout   = null`, map[string]any{"tcp_port": int64(22), "timeout": int64(300)}},
		{"unknown values are not checked", `http_port = volume.v.id
    http_path = volume.v.id
    timeout   = volume.v.id`, map[string]any{"http_port": Unknown{}, "http_path": Unknown{}, "timeout": Unknown{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			block := ""
			if c.ready != "" {
				block = "  ready {\n    " + c.ready + "\n  }\n"
			}
			src := image + `
param "port" { default = 2222 }
param "minutes" { default = 2 }
volume "v" { size = "1GiB" }
server "web" {
  count = 2
  image = image.base.id
` + block + "}\n"
			st := mustLoad(t, Bundle{"main.hcl": []byte(src)}, Options{})
			got, ok := res(t, st, "server.web[1]").Attrs["ready"]
			if c.want == nil {
				if ok {
					t.Fatalf(`Attrs["ready"] = %#v, want no key`, got)
				}
				return
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf(`Attrs["ready"] = %#v, want %#v`, got, c.want)
			}
		})
	}

	// a reference sees the normalised value, and lifecycle may ignore it
	st := mustLoad(t, Bundle{"main.hcl": []byte(image + `
server "web" {
  image    = image.base.id
  cpu_mode = "host-passthrough"
  ready {
    http_port = 80
  }
  lifecycle {
    ignore_changes = [ready, cpu_mode]
  }
}
server "plain" {
  image = image.base.id
}
output "path" { value = server.web.ready.http_path }
output "none" { value = server.plain.ready }
`)}, Options{})
	web, plain := res(t, st, "server.web"), res(t, st, "server.plain")
	if got := st.Outputs["path"].Value; got != "/" {
		t.Errorf("server.web.ready.http_path = %#v", got)
	}
	if got := st.Outputs["none"].Value; got != nil {
		t.Errorf("server.plain.ready = %#v, want null", got)
	}
	if !reflect.DeepEqual(web.Lifecycle.IgnoreChanges, []string{"cpu_mode", "ready"}) {
		t.Errorf("ignore_changes %v", web.Lifecycle.IgnoreChanges)
	}
	if web.Attrs["cpu_mode"] != "host-passthrough" {
		t.Errorf("cpu_mode %#v", web.Attrs["cpu_mode"])
	}
	// a server without them has neither key: existing stacks plan no change
	for _, k := range []string{"ready", "cpu_mode"} {
		if v, ok := plain.Attrs[k]; ok {
			t.Errorf("server.plain has %s = %#v", k, v)
		}
	}
	// a value derived from a computed attribute is recorded in AttrRefs
	st = mustLoad(t, Bundle{"main.hcl": []byte(image + `
volume "v" { size = "1GiB" }
server "web" {
  image = image.base.id
  ready {
    console = volume.v.id
  }
}
`)}, Options{})
	if got := res(t, st, "server.web").AttrRefs["ready"]; !reflect.DeepEqual(got, []string{"volume.v.id"}) {
		t.Errorf(`AttrRefs["ready"] = %v`, got)
	}
}

func TestSensitive(t *testing.T) {
	b := Bundle{"main.hcl": []byte(image + `
param "password" {
  type      = string
  sensitive = true
  default   = "hunter2"
}
server "web" {
  image     = image.base.id
  user_data = "password: ${param.password}"
  cmdline   = "console=ttyS0"
}
output "pw" { value = upper(param.password) }
output "plain" { value = "x" }
`)}
	st := mustLoad(t, b, Options{})
	web := res(t, st, "server.web")
	if !web.Sensitive["user_data"] || web.Sensitive["cmdline"] {
		t.Errorf("sensitive %v", web.Sensitive)
	}
	if !st.Outputs["pw"].Sensitive || st.Outputs["plain"].Sensitive || st.Outputs["pw"].Value != "HUNTER2" {
		t.Errorf("outputs %+v", st.Outputs)
	}
	if !st.Params["password"].Sensitive {
		t.Errorf("param not sensitive")
	}
}

func TestSizes(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  bool
	}{
		{"512MiB", 512 << 20, false}, {"10GiB", 10 << 30, false}, {"1.5GiB", 3 << 29, false},
		{"64M", 64 << 20, false}, {"1G", 1 << 30, false}, {"1024K", 1 << 20, false},
		{"4096", 4096, false}, {"2 GiB", 2 << 30, false}, {"1T", 1 << 40, false},
		{"0", 0, true}, {"1.3K", 0, true}, {"ten", 0, true}, {"5XB", 0, true}, {"", 0, true},
	}
	for _, c := range cases {
		got, err := ParseSize(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, err %v", c.in, got, err, c.want, c.err)
		}
	}
	for n, want := range map[int64]string{512 << 20: "512MiB", 3 << 29: "1536MiB", 1000: "1000B", 1 << 40: "1TiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %s, want %s", n, got, want)
		}
	}
	// a plain number is bytes
	st := mustLoad(t, Bundle{"main.hcl": []byte(`volume "v" { size = 1048576 }`)}, Options{})
	if got := res(t, st, "volume.v").Attrs["size"]; got != int64(1<<20) {
		t.Errorf("size %v", got)
	}
}

func TestVarPrecedence(t *testing.T) {
	b := Bundle{"main.hcl": []byte(`
param "n" {
  type    = number
  default = 1
}
param "s" { default = "d" }
param "l" {
  type    = list(string)
  default = []
}
output "n" { value = param.n }
output "s" { value = param.s }
output "l" { value = param.l }
`)}
	vf := func(src string) []VarFile { return []VarFile{{Name: "a.hcl", Bytes: []byte(src)}} }
	cases := []struct {
		name string
		opts Options
		n, s any
	}{
		{"default", Options{}, int64(1), "d"},
		{"env", Options{Env: map[string]string{"n": "2", "s": "e"}}, int64(2), "e"},
		{"file beats env", Options{Env: map[string]string{"n": "2"}, VarFiles: vf("n = 3")}, int64(3), "d"},
		{"later file wins", Options{VarFiles: append(vf("n = 3"), VarFile{Name: "b.hcl", Bytes: []byte("n = 4")})}, int64(4), "d"},
		{"var beats all", Options{Env: map[string]string{"n": "2"}, VarFiles: vf("n = 3"), Vars: []RawVar{{"n", "5"}, {"s", "v"}}}, int64(5), "v"},
		{"later var wins", Options{Vars: []RawVar{{"n", "5"}, {"n", "6"}}}, int64(6), "d"},
	}
	for _, c := range cases {
		st := mustLoad(t, b, c.opts)
		if st.Outputs["n"].Value != c.n || st.Outputs["s"].Value != c.s {
			t.Errorf("%s: n=%v s=%v, want %v %v", c.name, st.Outputs["n"].Value, st.Outputs["s"].Value, c.n, c.s)
		}
	}
	st := mustLoad(t, b, Options{Vars: []RawVar{{"l", `["a", "b"]`}}})
	if !reflect.DeepEqual(st.Outputs["l"].Value, []any{"a", "b"}) {
		t.Errorf("list var: %v", st.Outputs["l"].Value)
	}
	errs := loadErrors(t, b, Options{VarFiles: vf("nope = 1")})
	if !strings.Contains(errs, "a.hcl:1,1: Value for undeclared param") {
		t.Errorf("undeclared var-file name: %s", errs)
	}
}

func TestFileFunctions(t *testing.T) {
	b := Bundle{
		"main.hcl":        []byte(image + "server \"w\" {\n  image = image.base.id\n  user_data = file(\"files/ud.txt\")\n  cmdline = templatefile(\"files/./cmd.tpl\", { root = \"/dev/vda\" })\n}\n"),
		"files/ud.txt":    []byte("hello"),
		"files/cmd.tpl":   []byte("root=${root} %{ if root != \"\" }rw%{ endif }"),
		"other/skip.hcl":  []byte("this is not parsed"),
		"../escape.txt":   []byte("never"),
		"cloud-init.yaml": []byte(""),
	}
	st := mustLoad(t, b, Options{})
	w := res(t, st, "server.w")
	if w.Attrs["user_data"] != "hello" || w.Attrs["cmdline"] != "root=/dev/vda rw" {
		t.Errorf("attrs %#v", w.Attrs)
	}
	for _, p := range []string{"../escape.txt", "files/../../escape.txt", "/etc/passwd", "missing.txt"} {
		b2 := Bundle{"main.hcl": []byte(fmt.Sprintf("output \"x\" { value = file(%q) }", p)), "../escape.txt": []byte("never")}
		errs := loadErrors(t, b2, Options{})
		if !strings.Contains(errs, "main.hcl:1,28") || !strings.Contains(errs, "Invalid function argument") {
			t.Errorf("file(%q): %s", p, errs)
		}
	}
}

func TestFunctions(t *testing.T) {
	b := Bundle{"main.hcl": []byte(`
locals {
  m = { b = [1, 2], a = "x: y", c = true, d = "line1\nline2\n" }
}
output "yaml" { value = yamlencode(local.m) }
output "json" { value = jsonencode({ a = 1 }) }
output "host" { value = cidrhost("10.0.0.0/24", -2) }
output "sub" { value = cidrsubnet("10.0.0.0/16", 8, 3) }
output "mask" { value = cidrnetmask("10.0.0.0/20") }
output "b64" { value = base64encode("kiln") }
output "sha" { value = sha256("") }
output "len" { value = [length("héllo"), length([1, 2]), length({ a = 1 })] }
output "misc" { value = [format("%03d", 7), join(",", ["a", "b"]), lookup({ a = 1 }, "b", 9), tostring(3), tonumber("4")] }
output "range" { value = range(3) }
output "merge" { value = merge({ a = 1 }, { b = 2 }) }
output "try" { value = [try(tonumber("x"), 0), can(tonumber("x"))] }
output "coll" { value = [concat([1], [2]), flatten([[1], [2, [3]]]), distinct([1, 1, 2]), contains(["a"], "a"), element(["a", "b"], 3)] }
output "str" { value = [upper("a"), lower("B"), replace("a-b", "-", "_"), replace("a1b2", "/[0-9]/", ""), split(",", "a,b")] }
output "num" { value = [min(3, 1), max(3, 1), abs(-2), ceil(1.2), floor(1.8), coalesce("", "z")] }
`)}
	st := mustLoad(t, b, Options{})
	want := map[string]any{
		"yaml":  "a: \"x: y\"\nb:\n- 1\n- 2\nc: true\nd: |\n  line1\n  line2\n",
		"json":  `{"a":1}`,
		"host":  "10.0.0.254",
		"sub":   "10.0.3.0/24",
		"mask":  "255.255.240.0",
		"b64":   "a2lsbg==",
		"sha":   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"len":   []any{int64(5), int64(2), int64(1)},
		"misc":  []any{"007", "a,b", int64(9), "3", int64(4)},
		"range": []any{int64(0), int64(1), int64(2)},
		"merge": map[string]any{"a": int64(1), "b": int64(2)},
		"try":   []any{int64(0), false},
		"coll":  []any{[]any{int64(1), int64(2)}, []any{int64(1), int64(2), int64(3)}, []any{int64(1), int64(2)}, true, "b"},
		"str":   []any{"A", "b", "a_b", "ab", []any{"a", "b"}},
		"num":   []any{int64(1), int64(3), int64(2), int64(2), int64(1), "z"},
	}
	for k, w := range want {
		if got := st.Outputs[k].Value; !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", k, got, w)
		}
	}
}

func TestErrorsAllAtOnceAcrossFiles(t *testing.T) {
	b := Bundle{
		"a.hcl": []byte("network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n}\n"),
		"b.hcl": []byte("network \"lan2\" {\n  cidr = \"10.0.0.128/25\"\n}\nvolume \"v\" {\n  size = \"huge\"\n}\n"),
	}
	opts := Options{Stack: "t", Dir: "examples/x"}
	_, diags := Load(b, opts)
	var got []string
	for _, d := range diags {
		got = append(got, shortRange(*d.Subject)+" "+d.Summary)
	}
	want := []string{"examples/x/b.hcl:2,10 Overlapping networks", "examples/x/b.hcl:5,10 Invalid size"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, diags, b, opts, 80, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{"Error: Invalid size", "on examples/x/b.hcl line 5", `size = "huge"`} {
		if !strings.Contains(out, s) {
			t.Errorf("diagnostic text lacks %q:\n%s", s, out)
		}
	}
}

func TestFormat(t *testing.T) {
	got := string(Format([]byte("network \"lan\" {\ncidr=\"10.0.0.0/24\"\n  nat = true\n}\n")))
	want := "network \"lan\" {\n  cidr = \"10.0.0.0/24\"\n  nat  = true\n}\n"
	if got != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	if _, diags := FormatFile("x.hcl", []byte("network {")); !diags.HasErrors() {
		t.Errorf("FormatFile accepted a syntax error")
	}
}

func TestExamplesDirValidates(t *testing.T) {
	dirs, _ := filepath.Glob("../examples/*")
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		b := Bundle{}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			b[filepath.Base(f)] = src
		}
		if len(b) == 0 {
			continue
		}
		if _, diags := Load(b, Options{Stack: "example", Dir: dir}); diags.HasErrors() {
			t.Errorf("%s: %s", dir, diags.Error())
		}
	}
}

var _ = hcl.DiagError
