package planner

import (
	"bytes"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

type planCase struct {
	name    string
	desired func() *spec.Stack
	actual  func() *State
	// want maps addresses to their expected action; unlisted ones are not checked.
	want map[string]Action
	// wantBecause maps addresses to their expected ReplaceBecause.
	wantBecause map[string][]string
	// wantDeps maps addresses to their expected DependsOn.
	wantDeps map[string][]string
	// wantRefused, when set, expects a *PreventDestroyError naming these.
	wantRefused []string
	// wantCycle expects a *CycleError naming these.
	wantCycle []string
}

func applied(f fixture) func() *State { return f.applied }

func planCases() []planCase {
	base := baseFixture()
	with := func(edit func(*fixture)) fixture {
		f := baseFixture()
		edit(&f)
		return f
	}
	// desiredAgainst is the desired stack f as spec.Load would give it
	// against the state of g.
	desiredAgainst := func(f fixture, st func() *State) func() *spec.Stack {
		return func() *spec.Stack { return f.desired(st()) }
	}
	baseState := applied(base)
	// readyState has server.web[0] checked on port 22, server.web[1] on its console.
	readyState := applied(with(func(f *fixture) {
		f.ready = map[int]map[string]any{
			0: {"tcp_port": int64(22), "timeout": int64(300)},
			1: {"console": "^web login: ", "timeout": int64(600)},
		}
	}))

	return []planCase{
		{
			name:    "create_all",
			desired: func() *spec.Stack { return base.build(nil) },
			actual:  func() *State { return nil },
			want: map[string]Action{
				"image.base": Create, "network.lan": Create, "server.web[0]": Create,
				"server.web[1]": Create, "volume.data[0]": Create, "port_forward.http": Create,
			},
			wantDeps: map[string][]string{"server.web[1]": {"image.base", "network.lan", "volume.data[1]"}},
		},
		{
			name:    "no_op",
			desired: desiredAgainst(base, baseState),
			actual:  baseState,
			want: map[string]Action{
				"image.base": NoOp, "network.lan": NoOp, "server.web[0]": NoOp,
				"server.web[1]": NoOp, "volume.data[1]": NoOp, "port_forward.http": NoOp,
			},
		},
		{
			name:    "update_memory",
			desired: desiredAgainst(with(func(f *fixture) { f.memory = 1 << 30 }), baseState),
			actual:  baseState,
			want:    map[string]Action{"server.web[0]": Update, "server.web[1]": Update, "port_forward.http": NoOp, "image.base": NoOp},
		},
		{
			name:    "replace_image_cascade",
			desired: desiredAgainst(with(func(f *fixture) { f.imageSource = "https://images.example.org/debian-13.qcow2" }), baseState),
			actual:  baseState,
			want: map[string]Action{
				"image.base": Replace, "server.web[0]": Replace, "server.web[1]": Replace,
				"port_forward.http": Replace, "network.lan": NoOp, "volume.data[0]": NoOp,
			},
			wantBecause: map[string][]string{
				"image.base":        {"source"},
				"server.web[0]":     {"image.base.id"},
				"port_forward.http": {"server.web[0].address"},
			},
		},
		{
			name:    "delete_order",
			desired: desiredAgainst(with(func(f *fixture) { f.webCount = 0 }), baseState),
			actual:  baseState,
			want: map[string]Action{
				"port_forward.http": Delete, "server.web[0]": Delete, "server.web[1]": Delete,
				"volume.data[0]": Delete, "volume.data[1]": Delete, "image.base": NoOp, "network.lan": NoOp,
			},
			wantDeps: map[string][]string{
				"port_forward.http": nil,
				"server.web[0]":     {"port_forward.http"},
				"server.web[1]":     nil,
				"volume.data[0]":    {"server.web[0]"},
				"volume.data[1]":    {"server.web[1]"},
			},
		},
		{
			name:    "count_grow",
			desired: desiredAgainst(with(func(f *fixture) { f.webCount = 3 }), baseState),
			actual:  baseState,
			want: map[string]Action{
				"server.web[2]": Create, "volume.data[2]": Create,
				"server.web[0]": NoOp, "server.web[1]": NoOp,
			},
		},
		{
			name:    "count_shrink",
			desired: desiredAgainst(with(func(f *fixture) { f.webCount = 1 }), applied(with(func(f *fixture) { f.webCount = 3 }))),
			actual:  applied(with(func(f *fixture) { f.webCount = 3 })),
			want: map[string]Action{
				"server.web[0]": NoOp, "server.web[1]": Delete, "server.web[2]": Delete,
				"volume.data[1]": Delete, "volume.data[2]": Delete, "port_forward.http": NoOp,
			},
			wantDeps: map[string][]string{"volume.data[2]": {"server.web[2]"}},
		},
		{
			name:    "for_each_key_change",
			desired: desiredAgainst(with(func(f *fixture) { f.forEach = []string{"a", "c"} }), applied(with(func(f *fixture) { f.forEach = []string{"a", "b"} }))),
			actual:  applied(with(func(f *fixture) { f.forEach = []string{"a", "b"} })),
			want:    map[string]Action{`volume.v["a"]`: NoOp, `volume.v["b"]`: Delete, `volume.v["c"]`: Create},
		},
		{
			name: "prevent_destroy_replace",
			desired: desiredAgainst(with(func(f *fixture) {
				f.imageSource = "/srv/images/other.qcow2"
				f.lifecycle = map[string]spec.Lifecycle{"image.base": {PreventDestroy: true}}
			}), baseState),
			actual:      baseState,
			wantRefused: []string{"image.base"},
		},
		{
			name:    "prevent_destroy_delete",
			desired: desiredAgainst(with(func(f *fixture) { f.webCount = 1 }), baseState),
			actual: func() *State {
				return editState(baseState(), "volume.data[1]", func(r *ResourceState) { r.PreventDestroy = true })
			},
			wantRefused: []string{"volume.data[1]"},
		},
		{
			name:    "prevent_destroy_destroy_all",
			desired: func() *spec.Stack { return nil },
			actual: applied(with(func(f *fixture) {
				f.lifecycle = map[string]spec.Lifecycle{
					"volume.data[0]": {PreventDestroy: true},
					"network.lan":    {PreventDestroy: true},
				}
			})),
			wantRefused: []string{"network.lan", "volume.data[0]"},
		},
		{
			name: "prevent_destroy_allows_update",
			desired: desiredAgainst(with(func(f *fixture) {
				f.memory = 1 << 30
				f.lifecycle = map[string]spec.Lifecycle{"server.web[0]": {PreventDestroy: true}}
			}), baseState),
			actual: baseState,
			want:   map[string]Action{"server.web[0]": Update},
		},
		{
			name: "ignore_changes",
			desired: desiredAgainst(with(func(f *fixture) {
				f.memory = 2 << 30
				f.userData = "#cloud-config\nhostname: other\n"
				f.lifecycle = map[string]spec.Lifecycle{
					"server.web[0]": {IgnoreChanges: []string{"memory", "user_data"}},
					"server.web[1]": {IgnoreChanges: []string{"user_data"}},
				}
			}), baseState),
			actual: baseState,
			want:   map[string]Action{"server.web[0]": NoOp, "server.web[1]": Update},
		},
		{
			name: "ignore_changes_all",
			desired: desiredAgainst(with(func(f *fixture) {
				f.imageSource = "/srv/images/other.qcow2"
				f.lifecycle = map[string]spec.Lifecycle{
					"server.web[0]": {IgnoreChanges: []string{"all"}},
				}
			}), baseState),
			actual: baseState,
			want:   map[string]Action{"image.base": Replace, "server.web[0]": NoOp, "server.web[1]": Replace},
		},
		{
			name: "create_before_destroy",
			desired: desiredAgainst(with(func(f *fixture) {
				f.hostPort = 8443
				f.lifecycle = map[string]spec.Lifecycle{"port_forward.http": {CreateBeforeDestroy: true}}
			}), baseState),
			actual:      baseState,
			want:        map[string]Action{"port_forward.http": Replace},
			wantBecause: map[string][]string{"port_forward.http": {"host_port"}},
		},
		{
			name:    "destroy_all",
			desired: func() *spec.Stack { return nil },
			actual:  baseState,
			want: map[string]Action{
				"image.base": Delete, "network.lan": Delete, "server.web[0]": Delete,
				"volume.data[1]": Delete, "port_forward.http": Delete,
			},
			wantDeps: map[string][]string{
				"image.base":  {"server.web[0]", "server.web[1]"},
				"network.lan": {"server.web[0]", "server.web[1]"},
			},
		},
		{
			name: "sensitive",
			desired: desiredAgainst(with(func(f *fixture) {
				f.sensitiveUserData = true
				f.userData = "#cloud-config\npassword: s3cret\n"
			}), applied(with(func(f *fixture) { f.sensitiveUserData = true }))),
			actual:      applied(with(func(f *fixture) { f.sensitiveUserData = true })),
			want:        map[string]Action{"server.web[0]": Replace, "server.web[1]": Replace},
			wantBecause: map[string][]string{"server.web[0]": {"user_data"}},
		},
		{
			name: "unknown_configured",
			// spec could not evaluate volumes (its reference is unknown) although
			// the volume exists: an unknown configured value is a change.
			desired: func() *spec.Stack {
				s := base.desired(baseState())
				s.Resource("server.web[1]").Attrs["volumes"] = []any{spec.Unknown{}}
				return s
			},
			actual: baseState,
			want:   map[string]Action{"server.web[1]": Update, "server.web[0]": NoOp},
		},
		{
			name: "unknown_computed_known_by_state",
			desired: func() *spec.Stack {
				s := base.desired(baseState())
				s.Resource("server.web[0]").Computed["mac"] = spec.Unknown{}
				s.Resource("network.lan").Computed["bridge"] = spec.Unknown{}
				return s
			},
			actual: baseState,
			want:   map[string]Action{"server.web[0]": NoOp, "network.lan": NoOp},
		},
		{
			name:    "drift_missing",
			desired: desiredAgainst(base, func() *State { return withoutState(baseState(), "server.web[1]", "volume.data[1]") }),
			actual:  func() *State { return withoutState(baseState(), "server.web[1]", "volume.data[1]") },
			want:    map[string]Action{"server.web[1]": Create, "volume.data[1]": Create, "server.web[0]": NoOp},
		},
		{
			name:    "drift_differs",
			desired: desiredAgainst(base, baseState),
			actual: func() *State {
				return editState(baseState(), "server.web[0]", func(r *ResourceState) { r.Attrs["cpus"] = int64(4) })
			},
			want: map[string]Action{"server.web[0]": Update, "server.web[1]": NoOp},
		},
		{
			name:    "volume_size",
			desired: desiredAgainst(with(func(f *fixture) { f.volSize = 5 << 29 }), baseState),
			actual:  baseState,
			want:    map[string]Action{"volume.data[0]": Update, "volume.data[1]": Update, "server.web[0]": NoOp},
		},
		{
			name:        "port_forward_change",
			desired:     desiredAgainst(with(func(f *fixture) { f.hostPort = 9090 }), baseState),
			actual:      baseState,
			want:        map[string]Action{"port_forward.http": Replace, "server.web[0]": NoOp},
			wantBecause: map[string][]string{"port_forward.http": {"host_port"}},
		},
		{
			name:    "network_cidr_replace",
			desired: desiredAgainst(with(func(f *fixture) { f.cidr = "10.30.0.0/24" }), baseState),
			actual:  baseState,
			want: map[string]Action{
				"network.lan": Replace, "server.web[0]": Replace, "port_forward.http": Replace,
				"volume.data[0]": NoOp,
			},
			wantBecause: map[string][]string{"network.lan": {"cidr"}, "server.web[0]": {"networks"}},
		},
		{
			name: "delete_waits_for_update",
			// volume.old is gone from the template; server.web[0], which used it,
			// is updated first, then volume.old is deleted.
			desired: desiredAgainst(base, baseState),
			actual: func() *State {
				st := editState(baseState(), "server.web[0]", func(r *ResourceState) {
					r.Attrs["volumes"] = []any{"volume-data-id-0", "volume-old-id"}
					r.DependsOn = append(append([]string(nil), r.DependsOn...), "volume.old")
				})
				st.Resources = append(st.Resources, ResourceState{
					Address: "volume.old", Kind: spec.KindVolume,
					Attrs:    map[string]any{"size": int64(1 << 30), "format": "qcow2"},
					Computed: map[string]any{"id": "volume-old-id"},
				})
				return st
			},
			want:     map[string]Action{"server.web[0]": Update, "volume.old": Delete},
			wantDeps: map[string][]string{"volume.old": {"server.web[0]"}},
		},
		{
			name: "ready_add",
			// a ready block only changes when the server is called ready:
			// adding one updates the server in place
			desired: desiredAgainst(with(func(f *fixture) {
				f.ready = map[int]map[string]any{
					0: {"signal": true, "timeout": int64(300)},
					1: {"http_port": int64(80), "http_path": "/", "timeout": int64(5400)},
				}
			}), baseState),
			actual: baseState,
			want:   map[string]Action{"server.web[0]": Update, "server.web[1]": Update, "port_forward.http": NoOp},
		},
		{
			name: "ready_change",
			desired: desiredAgainst(with(func(f *fixture) {
				f.ready = map[int]map[string]any{0: {"http_port": int64(8080), "http_path": "/healthz", "timeout": int64(90)}}
			}), readyState),
			actual: readyState,
			want:   map[string]Action{"server.web[0]": Update, "server.web[1]": Update, "port_forward.http": NoOp},
		},
		{
			name: "ready_ignored",
			desired: desiredAgainst(with(func(f *fixture) {
				f.ready = map[int]map[string]any{0: {"signal": true, "timeout": int64(60)}}
				f.lifecycle = map[string]spec.Lifecycle{
					"server.web[0]": {IgnoreChanges: []string{"ready"}},
					"server.web[1]": {IgnoreChanges: []string{"ready"}},
				}
			}), readyState),
			actual: readyState,
			want:   map[string]Action{"server.web[0]": NoOp, "server.web[1]": NoOp},
		},
		{
			name:    "cpu_mode",
			desired: desiredAgainst(with(func(f *fixture) { f.cpuMode = map[int]string{0: "host-passthrough"} }), baseState),
			actual:  baseState,
			want:    map[string]Action{"server.web[0]": Update, "server.web[1]": NoOp},
		},
		{
			name: "cycle",
			desired: func() *spec.Stack {
				s := base.build(nil)
				s.Resource("image.base").DependsOn = []string{"server.web[1]"}
				return s
			},
			actual:    func() *State { return nil },
			wantCycle: []string{"image.base", "server.web[1]"},
		},
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range planCases() {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Plan(tc.desired(), tc.actual())
			var text, js bytes.Buffer
			switch {
			case tc.wantRefused != nil:
				var pd *PreventDestroyError
				if !errors.As(err, &pd) {
					t.Fatalf("Plan error = %v, want a PreventDestroyError", err)
				}
				if !reflect.DeepEqual(pd.Addresses, tc.wantRefused) {
					t.Errorf("refused %v, want %v", pd.Addresses, tc.wantRefused)
				}
				text.WriteString("error: " + err.Error() + "\n")
				golden(t, tc.name+".txt", text.Bytes())
				return
			case tc.wantCycle != nil:
				var ce *CycleError
				if !errors.As(err, &ce) {
					t.Fatalf("Plan error = %v, want a CycleError", err)
				}
				if !reflect.DeepEqual(ce.Addresses, tc.wantCycle) {
					t.Errorf("cycle %v, want %v", ce.Addresses, tc.wantCycle)
				}
				return
			case err != nil:
				t.Fatalf("Plan: %v", err)
			}
			byAddr := map[string]*Change{}
			for i := range res.Changes {
				byAddr[res.Changes[i].Address] = &res.Changes[i]
			}
			for addr, want := range tc.want {
				c := byAddr[addr]
				if c == nil {
					t.Errorf("%s: no change, want %s", addr, want)
					continue
				}
				if c.Action != want {
					t.Errorf("%s: %s, want %s (changed %v)", addr, c.Action, want, c.Changed)
				}
			}
			for addr, want := range tc.wantBecause {
				if c := byAddr[addr]; c == nil || !reflect.DeepEqual(c.ReplaceBecause, want) {
					t.Errorf("%s: replace because %v, want %v", addr, c.ReplaceBecause, want)
				}
			}
			for addr, want := range tc.wantDeps {
				if c := byAddr[addr]; c == nil || !reflect.DeepEqual(c.DependsOn, want) {
					t.Errorf("%s: depends on %v, want %v", addr, c.DependsOn, want)
				}
			}
			checkOrder(t, res)
			if err := RenderText(&text, res, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := RenderJSON(&js, res); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".txt", text.Bytes())
			golden(t, tc.name+".json", js.Bytes())
		})
	}
}

// checkOrder asserts that every change comes after what it depends on, that
// each address appears once, and that all deletes come last.
func checkOrder(t *testing.T, res *Result) {
	t.Helper()
	pos := map[string]int{}
	for i, c := range res.Changes {
		if _, dup := pos[c.Address]; dup {
			t.Errorf("%s listed twice", c.Address)
		}
		pos[c.Address] = i
	}
	seenDelete := false
	for i, c := range res.Changes {
		for _, d := range c.DependsOn {
			if j, ok := pos[d]; !ok || j >= i {
				t.Errorf("%s (at %d) depends on %s (at %d, present %v)", c.Address, i, d, j, ok)
			}
		}
		if c.Action == Delete {
			seenDelete = true
		} else if seenDelete {
			t.Errorf("%s (%s) comes after a delete", c.Address, c.Action)
		}
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestPlanDeterministic plans every case twice, once with its inputs
// shuffled, and wants byte-identical renderings.
func TestPlanDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range planCases() {
		t.Run(tc.name, func(t *testing.T) {
			render := func(shuffle bool) (string, string) {
				d, a := tc.desired(), tc.actual()
				if shuffle {
					if d != nil {
						rng.Shuffle(len(d.Resources), func(i, j int) { d.Resources[i], d.Resources[j] = d.Resources[j], d.Resources[i] })
					}
					if a != nil {
						rng.Shuffle(len(a.Resources), func(i, j int) { a.Resources[i], a.Resources[j] = a.Resources[j], a.Resources[i] })
					}
				}
				res, err := Plan(d, a)
				if err != nil {
					return "error: " + err.Error(), ""
				}
				var text, js bytes.Buffer
				if err := RenderText(&text, res, TextOptions{Color: true}); err != nil {
					t.Fatal(err)
				}
				if err := RenderJSON(&js, res); err != nil {
					t.Fatal(err)
				}
				return text.String(), js.String()
			}
			t1, j1 := render(false)
			t2, j2 := render(false)
			t3, j3 := render(true)
			if t1 != t2 || j1 != j2 {
				t.Error("two runs on the same input differ")
			}
			if t1 != t3 || j1 != j3 {
				t.Errorf("shuffled input changes the output:\n%s\n---\n%s", t1, t3)
			}
		})
	}
}

func TestRenderTextColor(t *testing.T) {
	f := baseFixture()
	res, err := Plan(f.build(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var plain, color bytes.Buffer
	if err := RenderText(&plain, res, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := RenderText(&color, res, TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plain.String(), "\x1b[") {
		t.Error("plain output holds ANSI escapes")
	}
	if !strings.Contains(color.String(), "\x1b[32m+\x1b[0m") {
		t.Error("colour output has no green +")
	}
	stripped := ansiRE(color.String())
	if stripped != plain.String() {
		t.Errorf("colour output without its escapes differs from plain output:\n%s\n---\n%s", stripped, plain.String())
	}
}

// ansiRE strips ANSI SGR sequences.
func ansiRE(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := strings.IndexByte(s[i:], 'm')
			if j > 0 {
				i += j
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{512 << 20, "512MiB"},
		{2 << 30, "2GiB"},
		{3 << 29, "1.5GiB"},
		{1 << 40, "1TiB"},
		{1000, "1000B"},
		{1536, "1.5KiB"},
		{(1 << 30) + 1<<20, "1025MiB"},
		{0, "0B"},
	} {
		if got := FormatSize(tc.in); got != tc.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFormatReady(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{map[string]any{"tcp_port": int64(22), "timeout": int64(300)}, `{ tcp_port = 22, timeout = "5m" }`},
		{map[string]any{"signal": true, "timeout": int64(90)}, `{ signal = true, timeout = "1m30s" }`},
		{map[string]any{"signal": true, "timeout": int64(86400)}, `{ signal = true, timeout = "24h" }`},
		{map[string]any{"signal": true, "timeout": int64(3601)}, `{ signal = true, timeout = "1h1s" }`},
		{map[string]any{"signal": true, "timeout": spec.Unknown{}}, `{ signal = true, timeout = (known after apply) }`},
		{spec.Unknown{}, "(known after apply)"},
	} {
		if got := formatReady(tc.in); got != tc.want {
			t.Errorf("formatReady(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	base := baseFixture()
	for _, tc := range []struct {
		name    string
		desired func() *spec.Stack
		actual  func() *State
		want    string
	}{
		{
			name: "dependency not in the stack",
			desired: func() *spec.Stack {
				s := base.build(nil)
				s.Resource("server.web[0]").DependsOn = []string{"network.gone"}
				return s
			},
			actual: func() *State { return nil },
			want:   "plan: server.web[0] depends on network.gone, which is not in the stack",
		},
		{
			name: "duplicate desired address",
			desired: func() *spec.Stack {
				s := base.build(nil)
				s.Resources = append(s.Resources, s.Resources[0])
				return s
			},
			actual: func() *State { return nil },
			want:   "plan: stack lists image.base twice",
		},
		{
			name:    "duplicate state address",
			desired: func() *spec.Stack { return nil },
			actual: func() *State {
				st := base.applied()
				st.Resources = append(st.Resources, st.Resources[1])
				return st
			},
			want: "plan: state lists network.lan twice",
		},
		{
			name:    "cycle in the state",
			desired: func() *spec.Stack { return nil },
			actual: func() *State {
				return editState(base.applied(), "image.base", func(r *ResourceState) { r.DependsOn = []string{"port_forward.http"} })
			},
			want: "plan: dependency cycle between image.base, port_forward.http, server.web[0]",
		},
		{
			name: "self dependency",
			desired: func() *spec.Stack {
				s := base.build(nil)
				s.Resource("network.lan").DependsOn = []string{"network.lan"}
				return s
			},
			actual: func() *State { return nil },
			want:   "plan: dependency cycle between network.lan",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Plan(tc.desired(), tc.actual())
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Plan error = %v, want %q", err, tc.want)
			}
			if res != nil {
				t.Error("a refused plan returned a result")
			}
		})
	}
}

// TestPlanDoesNotMutate plans every case and wants its inputs untouched: the
// raftstore hands the planner the state it holds.
func TestPlanDoesNotMutate(t *testing.T) {
	for _, tc := range planCases() {
		t.Run(tc.name, func(t *testing.T) {
			d, a := tc.desired(), tc.actual()
			var aCopy State
			if a != nil {
				roundTrip(t, a, &aCopy)
			}
			dCopy := tc.desired()
			_, _ = Plan(d, a)
			if a != nil && !reflect.DeepEqual(*a, aCopy) {
				t.Error("Plan changed the actual state")
			}
			if !reflect.DeepEqual(d, dCopy) {
				t.Error("Plan changed the desired stack")
			}
		})
	}
}
