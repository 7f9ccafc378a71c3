package agent

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/image"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/portforward"
	"github.com/kiln-dev/kiln/executors/volume"
	"github.com/kiln-dev/kiln/spec"
)

// realImage serves the image kind from the host's content-addressed cache.
// An image's id is its sha256. The cache is shared by every stack of the
// host: deleting an image resource keeps the file (`kiln image prune`
// removes what no stack uses).
type realImage struct{ r *Real }

func (k realImage) Create(ctx context.Context, req executors.Request[kinds.ImageAttrs]) (Object, error) {
	a := req.Instance
	at := req.Spec
	if err := req.SpecErr; err != nil {
		return Object{}, err
	}
	img, err := k.r.images.Create(ctx, image.Template{Source: at.Source, SHA256: at.SHA256}, fetchProgress(ctx, a.Address))
	if err != nil {
		return Object{}, policyErr(a, "source", err)
	}
	if at.Format != "" && at.Format != img.Format {
		return Object{}, fmt.Errorf("%s: format is %q but %s holds a %s image", a.Address, at.Format, at.Source, img.Format)
	}
	return imageObject(a, img), nil
}

// imageObject is the image's attributes. sha256 and format are set when the
// template sets them (to what is really cached); left out otherwise, so an
// unset optional attribute does not read as a change.
func imageObject(a executors.Instance, img image.Image) Object {
	c := map[string]any{"id": img.SHA256, "size": img.Size}
	if _, ok := a.Attrs["sha256"]; ok {
		c["sha256"] = img.SHA256
	}
	if _, ok := a.Attrs["format"]; ok {
		c["format"] = img.Format
	}
	return Object{PhysicalName: img.Volume, Attrs: withComputed(a, c)}
}

func (k realImage) Update(ctx context.Context, req executors.Request[kinds.ImageAttrs]) (Object, error) {
	// Every attribute of an image forces a replacement; an update only
	// makes sure the image is cached.
	return k.Create(ctx, req)
}

func (k realImage) Delete(ctx context.Context, _ executors.Request[kinds.ImageAttrs]) error {
	return ctx.Err()
}

func (k realImage) Read(ctx context.Context, req executors.Request[kinds.ImageAttrs]) (Object, bool, error) {
	a := req.Instance
	sum := a.ID
	if sum == "" || (a.Op == executors.OpCreate && a.Generation != "") {
		// Only the sha256 matters to a read.
		if err := kinds.For(req.SpecErr, "sha256"); err != nil {
			return Object{}, false, err
		}
		sum = req.Spec.SHA256
	}
	if sum == "" {
		// Without a sha256 the image is whatever the source holds now:
		// only a fetch can tell.
		return Object{}, false, nil
	}
	img, err := k.r.images.Read(ctx, sum)
	if gone, err := absent(err); gone || err != nil {
		return Object{}, false, err
	}
	return imageObject(a, img), true, nil
}

// CachedImages lists the sha256 of every cached image.
func (k realImage) CachedImages(ctx context.Context) ([]string, error) {
	imgs, err := k.r.images.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, i.SHA256)
	}
	return out, nil
}

// realVolume serves the volume kind from the kiln-volumes pool. A volume's
// id is its name in the pool, which is what a server's `volumes` lists.
type realVolume struct{ r *Real }

func volumeSpec(a executors.Instance, at kinds.VolumeAttrs, phys string) volume.Spec {
	return volume.Spec{Stack: a.Stack, Address: phys, Size: at.Size, Format: formatOr(at.Format)}
}

// formatOr is a volume's format, qcow2 when the attribute is not set.
func formatOr(format string) string {
	if format == "" {
		return volume.QCOW2
	}
	return format
}

// target finds the volume an action is about.
func (k realVolume) target(a executors.Instance) (string, error) {
	return k.r.target(spec.KindVolume, a)
}

func volumeObject(a executors.Instance, v volume.Volume) Object {
	return Object{PhysicalName: v.Name, Attrs: withComputed(a, map[string]any{"id": v.Name, "size": v.Size, "format": v.Format})}
}

func (k realVolume) Create(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) (Object, error) {
	a := req.Instance
	phys := physAddress(a.Address, a.Generation)
	at := req.Spec
	if err := req.SpecErr; err != nil {
		return Object{}, err
	}
	s := volumeSpec(a, at, phys)
	if s.Size <= 0 {
		return Object{}, fmt.Errorf("%s: attribute \"size\" is required", a.Address)
	}
	rec := record{Kind: "volume", ID: volume.Name(a.Stack, phys, s.Format), Stack: a.Stack, Phys: phys}
	if err := k.r.reg.Put(rec); err != nil {
		return Object{}, err
	}
	v, err := k.r.vols.Create(ctx, s)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return volumeObject(a, v), nil
}

func (k realVolume) Update(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) (Object, error) {
	a := req.Instance
	phys, err := k.target(a)
	if err != nil {
		return Object{}, err
	}
	at := req.Spec
	if err := req.SpecErr; err != nil {
		return Object{}, err
	}
	s := volumeSpec(a, at, phys)
	// A volume a running guest has attached is held open by qemu: grow it
	// through the guest's domain. Anything else (shrink, format) goes the
	// volume driver's way, which refuses what cannot be done in place.
	if cur, err := k.r.vols.Read(ctx, a.Stack, phys); err == nil && s.Size > cur.Size {
		if at.Format == "" || at.Format == cur.Format {
			grown, err := k.r.srv.GrowDisk(ctx, cur.Path, s.Size)
			if err != nil {
				return Object{}, fmt.Errorf("%s: %w", a.Address, err)
			}
			if grown {
				v, err := k.r.vols.Reload(cur.Name)
				if err != nil {
					return Object{}, fmt.Errorf("%s: %w", a.Address, err)
				}
				return volumeObject(a, v), nil
			}
		}
	}
	v, err := k.r.vols.Update(ctx, s)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	return volumeObject(a, v), nil
}

func (k realVolume) Delete(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) error {
	a := req.Instance
	phys, gone, err := existing(k.target(a))
	if gone || err != nil {
		return err
	}
	if err := k.r.vols.Delete(ctx, a.Stack, phys); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	for _, f := range []string{volume.QCOW2, volume.Raw} {
		if err := k.r.reg.Del("volume", volume.Name(a.Stack, phys, f)); err != nil {
			return err
		}
	}
	return nil
}

func (k realVolume) Read(ctx context.Context, req executors.Request[kinds.VolumeAttrs]) (Object, bool, error) {
	a := req.Instance
	phys, gone, err := existing(k.target(a))
	if gone || err != nil {
		return Object{}, false, err
	}
	v, err := k.r.vols.Read(ctx, a.Stack, phys)
	if gone, err := absent(err); gone || err != nil {
		return Object{}, false, err
	}
	return volumeObject(a, v), true, nil
}

// realPortForward serves the port_forward kind: DNAT rules in kiln's
// chains. Its id is a readable name made from stack and address.
type realPortForward struct{ r *Real }

// resolve takes a target still unknown from the address of the only
// server the port forward depends on.
func (k realPortForward) resolve(a executors.Instance) map[string]any {
	if _, ok := a.Attrs["target"].(string); !ok {
		if dep, ok := depOfKind(a, "server"); ok {
			if t, ok := dep["address"].(string); ok && t != "" {
				return map[string]any{"target": t}
			}
		}
	}
	return nil
}

// spec is the executor's spec of the port forward at phys; with full, its
// rules too.
func (k realPortForward) spec(req executors.Request[kinds.PortForwardAttrs], phys string, full bool) (portforward.Spec, error) {
	s := portforward.Spec{Stack: req.Stack, Address: phys}
	if !full {
		return s, nil
	}
	if err := req.SpecErr; err != nil {
		return s, err
	}
	at := req.Spec
	s.HostPort, s.TargetPort, s.Protocol, s.Target = int(at.HostPort), int(at.TargetPort), at.Protocol, at.Target
	return s, nil
}

func (k realPortForward) apply(ctx context.Context, req executors.Request[kinds.PortForwardAttrs], phys string) (Object, error) {
	a := req.Instance
	s, err := k.spec(req, phys, true)
	if err != nil {
		return Object{}, err
	}
	if err := k.r.checkForward(a, s); err != nil {
		return Object{}, err
	}
	id := kinds.PortForwardID(a.Stack, phys)
	if err := k.r.reg.Put(record{Kind: "port_forward", ID: id, Stack: a.Stack, Phys: phys}); err != nil {
		return Object{}, err
	}
	if _, err := k.r.pf.Create(ctx, s); err != nil {
		return Object{}, fmt.Errorf("%s: %w", a.Address, err)
	}
	obj := Object{PhysicalName: id, Attrs: withComputed(a, map[string]any{"id": id})}
	obj.Attrs["target"] = s.Target
	return obj, nil
}

func (k realPortForward) Create(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) (Object, error) {
	a := req.Instance
	return k.apply(ctx, req, physAddress(a.Address, a.Generation))
}

func (k realPortForward) Update(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) (Object, error) {
	a := req.Instance
	phys, err := k.r.target(spec.KindPortForward, a)
	if err != nil {
		return Object{}, err
	}
	return k.apply(ctx, req, phys)
}

func (k realPortForward) Delete(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) error {
	a := req.Instance
	phys, gone, err := existing(k.r.target(spec.KindPortForward, a))
	if gone || err != nil {
		return err
	}
	s, _ := k.spec(req, phys, false)
	if err := k.r.pf.Delete(ctx, s); err != nil {
		return fmt.Errorf("%s: %w", a.Address, err)
	}
	return k.r.reg.Del("port_forward", kinds.PortForwardID(a.Stack, phys))
}

// Read says the port forward exists when all its rules are there as the
// attributes want them (a create repairs the rest); for a delete, when any
// of its rules is left.
func (k realPortForward) Read(ctx context.Context, req executors.Request[kinds.PortForwardAttrs]) (Object, bool, error) {
	a := req.Instance
	phys, gone, err := existing(k.r.target(spec.KindPortForward, a))
	if gone || err != nil {
		return Object{}, false, err
	}
	s, err := k.spec(req, phys, true)
	if err != nil {
		return Object{}, false, err
	}
	st, err := k.r.pf.Read(ctx, s)
	if gone, err := absent(err); gone || err != nil {
		return Object{}, false, err
	}
	if a.Op != executors.OpDelete && !st.Exact {
		return Object{}, false, nil
	}
	id := kinds.PortForwardID(a.Stack, phys)
	obj := Object{PhysicalName: id, Attrs: withComputed(a, map[string]any{"id": id})}
	obj.Attrs["target"] = s.Target
	return obj, true, nil
}
