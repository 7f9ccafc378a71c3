package planner

import (
	"fmt"
	"sort"

	"github.com/kiln-dev/kiln/spec"
)

// fixture builds the design's example stack (spec/testdata/valid/design) in Go, the way spec.Load would return
// it: computed attributes come from prior when the resource exists, are derived
// when they can be (a network's gateway, a server's address), and are unknown
// otherwise; configured attributes that reference them follow.
type fixture struct {
	webCount    int
	imageSource string
	memory      int64
	volSize     int64
	cidr        string
	hostPort    int64
	userData    string
	// forEach, when set, adds volume.v[key] for each key.
	forEach []string
	// lifecycle by address.
	lifecycle map[string]spec.Lifecycle
	// sensitiveUserData marks server user_data sensitive (from a sensitive param).
	sensitiveUserData bool
	// ready and cpuMode set Attrs["ready"] and Attrs["cpu_mode"] of
	// server.web[i]; a server not listed has neither, as spec.Load gives it.
	ready   map[int]map[string]any
	cpuMode map[int]string
}

func baseFixture() fixture {
	return fixture{
		webCount:    2,
		imageSource: "https://images.example.org/debian-12-genericcloud-amd64.qcow2",
		memory:      512 << 20,
		volSize:     2 << 30,
		cidr:        "10.20.0.0/24",
		hostPort:    8080,
		userData:    "#cloud-config\nhostname: web\n",
	}
}

func ref(prior spec.Prior, addr, attr string) any {
	if v, ok := prior[addr][attr]; ok {
		return v
	}
	return spec.Unknown{}
}

func (f fixture) build(prior spec.Prior) *spec.Stack {
	s := &spec.Stack{Name: "web", Outputs: map[string]spec.Output{}}
	add := func(r *spec.Resource) {
		r.Lifecycle = f.lifecycle[r.Address]
		s.Resources = append(s.Resources, r)
	}
	prefix := f.cidr[:len(f.cidr)-len("0/24")]
	add(&spec.Resource{
		Address: "image.base", Kind: spec.KindImage, Name: "base",
		Attrs: map[string]any{"source": f.imageSource, "sha256": "5f1c0ffee", "format": "qcow2"},
		Computed: map[string]any{
			"id":   ref(prior, "image.base", "id"),
			"size": ref(prior, "image.base", "size"),
		},
	})
	add(&spec.Resource{
		Address: "network.lan", Kind: spec.KindNetwork, Name: "lan",
		Attrs: map[string]any{"cidr": f.cidr, "nat": true, "dhcp": true, "dns": []any{"1.1.1.1"}},
		Computed: map[string]any{
			"id":      ref(prior, "network.lan", "id"),
			"gateway": prefix + "1",
			"bridge":  ref(prior, "network.lan", "bridge"),
		},
	})
	var addrs []any
	for i := 0; i < f.webCount; i++ {
		vol := fmt.Sprintf("volume.data[%d]", i)
		add(&spec.Resource{
			Address: vol, Kind: spec.KindVolume, Name: "data", Key: i,
			Attrs:    map[string]any{"size": f.volSize, "format": "qcow2"},
			Computed: map[string]any{"id": ref(prior, vol, "id")},
		})
		srv := fmt.Sprintf("server.web[%d]", i)
		ip := fmt.Sprintf("%s%d", prefix, 10+i)
		addrs = append(addrs, ip)
		sens := map[string]bool(nil)
		if f.sensitiveUserData {
			sens = map[string]bool{"user_data": true}
		}
		attrs := map[string]any{
			"image":     ref(prior, "image.base", "id"),
			"cpus":      int64(1),
			"memory":    f.memory,
			"disk":      int64(4 << 30),
			"networks":  []any{map[string]any{"name": "lan", "address": ip}},
			"volumes":   []any{ref(prior, vol, "id")},
			"user_data": f.userData,
		}
		if r, ok := f.ready[i]; ok {
			attrs["ready"] = merge(r, nil)
		}
		if m, ok := f.cpuMode[i]; ok {
			attrs["cpu_mode"] = m
		}
		add(&spec.Resource{
			Address: srv, Kind: spec.KindServer, Name: "web", Key: i,
			Attrs:     attrs,
			Sensitive: sens,
			Computed: map[string]any{
				"id":        ref(prior, srv, "id"),
				"address":   ip,
				"addresses": map[string]any{"lan": ip},
				"mac":       ref(prior, srv, "mac"),
			},
			DependsOn: []string{"image.base", "network.lan", vol},
			AttrRefs: map[string][]string{
				"image":   {"image.base.id"},
				"volumes": {vol + ".id"},
			},
		})
	}
	for _, k := range f.forEach {
		addr := fmt.Sprintf("volume.v[%q]", k)
		add(&spec.Resource{
			Address: addr, Kind: spec.KindVolume, Name: "v", Key: k,
			Attrs:    map[string]any{"size": int64(1 << 30), "format": "raw"},
			Computed: map[string]any{"id": ref(prior, addr, "id")},
		})
	}
	if f.webCount > 0 {
		add(&spec.Resource{
			Address: "port_forward.http", Kind: spec.KindPortForward, Name: "http",
			Attrs: map[string]any{
				"host_port": f.hostPort, "protocol": "tcp",
				"target": addrs[0], "target_port": int64(80),
			},
			Computed:  map[string]any{"id": ref(prior, "port_forward.http", "id")},
			DependsOn: []string{"server.web[0]"},
			AttrRefs:  map[string][]string{"target": {"server.web[0].address"}},
		})
	}
	sort.Slice(s.Resources, func(i, j int) bool { return s.Resources[i].Address < s.Resources[j].Address })
	s.Outputs["web_addresses"] = spec.Output{Name: "web_addresses", Value: addrs}
	s.Outputs["image_id"] = spec.Output{Name: "image_id", Value: ref(prior, "image.base", "id")}
	s.Outputs["root_password"] = spec.Output{Name: "root_password", Value: "hunter2", Sensitive: true}
	return s
}

// applied is the state after the fixture was applied: every computed value
// known, and the stack rebuilt with that prior as spec.Load would.
func (f fixture) applied() *State {
	first := f.build(nil)
	prior := spec.Prior{}
	for _, r := range first.Resources {
		comp := map[string]any{}
		for k, v := range r.Computed {
			if spec.IsUnknown(v) {
				v = fakeComputed(r, k)
			}
			comp[k] = v
		}
		prior[r.Address] = comp
	}
	second := f.build(prior)
	st := &State{Stack: second.Name, Serial: 7}
	for _, r := range second.Resources {
		st.Resources = append(st.Resources, ResourceState{
			Address:        r.Address,
			Kind:           r.Kind,
			Attrs:          r.Attrs,
			Computed:       prior[r.Address],
			DependsOn:      r.DependsOn,
			Sensitive:      r.Sensitive,
			PreventDestroy: r.Lifecycle.PreventDestroy,
		})
	}
	return st
}

// desired is the fixture as spec.Load would return it against state st.
func (f fixture) desired(st *State) *spec.Stack { return f.build(st.Prior()) }

func fakeComputed(r *spec.Resource, attr string) any {
	switch {
	case r.Kind == spec.KindImage && attr == "size":
		return int64(2 << 30)
	case attr == "mac":
		return "52:54:00:00:00:0" + fmt.Sprint(r.Key)
	}
	return fmt.Sprintf("%s-%s-%s", r.Kind, r.Name, attr) + keySuffix(r.Key)
}

func keySuffix(k any) string {
	if k == nil {
		return ""
	}
	return fmt.Sprintf("-%v", k)
}

// withoutState drops the named instances from a state.
func withoutState(st *State, addrs ...string) *State {
	drop := map[string]bool{}
	for _, a := range addrs {
		drop[a] = true
	}
	out := &State{Stack: st.Stack, Serial: st.Serial}
	for _, r := range st.Resources {
		if !drop[r.Address] {
			out.Resources = append(out.Resources, r)
		}
	}
	return out
}

// editState changes one instance of a state.
func editState(st *State, addr string, edit func(*ResourceState)) *State {
	out := &State{Stack: st.Stack, Serial: st.Serial}
	for _, r := range st.Resources {
		if r.Address == addr {
			r.Attrs = merge(r.Attrs, nil)
			r.Computed = merge(r.Computed, nil)
			edit(&r)
		}
		out.Resources = append(out.Resources, r)
	}
	return out
}
