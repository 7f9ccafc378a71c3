package memdriver

import (
	"context"
	"errors"
	"testing"
)

func TestCreateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	d := New()
	a, err := d.Create(ctx, "network", "network.lan", "", map[string]any{"cidr": "10.20.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Create(ctx, "network", "network.lan", "", map[string]any{"cidr": "10.20.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID {
		t.Errorf("second create made %s, want adoption of %s", b.ID, a.ID)
	}
	if n := len(d.Objects()); n != 1 {
		t.Errorf("objects = %d, want 1", n)
	}
	if got := d.Calls("network", "network.lan", OpCreate); got != 2 {
		t.Errorf("create calls = %d, want 2", got)
	}
}

func TestComputedAttributes(t *testing.T) {
	tests := []struct {
		kind  string
		attrs map[string]any
		want  map[string]any
	}{
		{"network", map[string]any{"cidr": "10.20.0.0/24"}, map[string]any{"gateway": "10.20.0.1"}},
		{"server", map[string]any{"networks": []any{map[string]any{"name": "lan", "address": "10.20.0.10"}}},
			map[string]any{"address": "10.20.0.10"}},
		{"volume", map[string]any{"size": int64(1 << 30)}, map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			ctx := context.Background()
			o1, err := New().Create(ctx, tt.kind, tt.kind+".x", "", tt.attrs)
			if err != nil {
				t.Fatal(err)
			}
			o2, _ := New().Create(ctx, tt.kind, tt.kind+".x", "", tt.attrs)
			if o1.ID == "" || o1.ID != o2.ID {
				t.Errorf("ids %q and %q: want equal and set", o1.ID, o2.ID)
			}
			for k, v := range tt.want {
				if o1.Computed[k] != v {
					t.Errorf("%s = %v, want %v", k, o1.Computed[k], v)
				}
			}
			if tt.kind == "server" && o1.Computed["mac"] != o2.Computed["mac"] {
				t.Errorf("mac not deterministic")
			}
		})
	}
}

func TestDeleteMissingSucceeds(t *testing.T) {
	ctx := context.Background()
	d := New()
	if err := d.Delete(ctx, "volume", "volume.data[0]", ""); err != nil {
		t.Fatalf("delete of missing: %v", err)
	}
	if _, err := d.Create(ctx, "volume", "volume.data[0]", "", nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := d.Delete(ctx, "volume", "volume.data[0]", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := d.Read(ctx, "volume", "volume.data[0]"); ok {
		t.Error("object still there after delete")
	}
}

func TestGenerations(t *testing.T) {
	ctx := context.Background()
	d := New()
	old, _ := d.Create(ctx, "server", "server.web", "", nil)
	nw, _ := d.Create(ctx, "server", "server.web", "op-2", nil)
	if old.ID == nw.ID {
		t.Fatal("new generation reused the old id")
	}
	cur, _, _ := d.Read(ctx, "server", "server.web")
	if cur.ID != nw.ID {
		t.Errorf("Read = %s, want newest %s", cur.ID, nw.ID)
	}
	if err := d.Delete(ctx, "server", "server.web", old.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.ReadID(ctx, "server", "server.web", old.ID); ok {
		t.Error("old instance still there")
	}
	if cur, ok, _ := d.Read(ctx, "server", "server.web"); !ok || cur.ID != nw.ID {
		t.Errorf("Read after deleting old = %v %v, want %s", cur.ID, ok, nw.ID)
	}
}

func TestFailOn(t *testing.T) {
	ctx := context.Background()
	d := New()
	boom := errors.New("boom")
	d.FailOn("server.web", OpCreate, boom)
	if _, err := d.Create(ctx, "server", "server.web", "", nil); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, ok, _ := d.Read(ctx, "server", "server.web"); ok {
		t.Error("failed create left an object")
	}
	d.FailOn("server.web", OpCreate, nil)
	if _, err := d.Create(ctx, "server", "server.web", "", nil); err != nil {
		t.Fatalf("after clearing fault: %v", err)
	}
}

func TestBlock(t *testing.T) {
	tests := []struct {
		when       When
		wantExists bool
	}{
		{BeforeEffect, false},
		{AfterEffect, true},
	}
	for _, tt := range tests {
		d := New()
		g := d.Block("server.web", OpCreate, tt.when)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			_, err := d.Create(ctx, "server", "server.web", "", nil)
			done <- err
		}()
		<-g.Reached()
		_, ok, _ := d.Read(context.Background(), "server", "server.web")
		if ok != tt.wantExists {
			t.Errorf("when=%d: exists while blocked = %v, want %v", tt.when, ok, tt.wantExists)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("when=%d: err = %v, want canceled", tt.when, err)
		}
		g.Release()
		if _, err := d.Create(context.Background(), "server", "server.web", "", nil); err != nil {
			t.Errorf("after release: %v", err)
		}
	}
}

func TestUnknownKind(t *testing.T) {
	if _, err := New().Create(context.Background(), "router", "router.r", "", nil); err == nil {
		t.Fatal("want error for unknown kind")
	}
}
