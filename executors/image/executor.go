package image

import (
	"context"
	"fmt"

	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/kinds"
)

// Executor is the image kind's executor (executors.Executor), over the
// host's content-addressed cache. An image's id is its sha256. The cache is
// shared by every stack of the host: deleting an image resource keeps the
// file (`kiln image prune` removes what no stack uses).
type Executor struct {
	Host  *host.Host
	Cache *Cache
	// Progress, when set, is the progress callback of the fetch of the
	// image at address (nil: none).
	Progress func(ctx context.Context, address string) Progress
}

var _ executors.Executor[kinds.ImageAttrs] = Executor{}

// Create fetches the image into the cache (or finds it there).
func (e Executor) Create(ctx context.Context, req executors.Request[kinds.ImageAttrs]) (executors.Result, error) {
	a := req.Instance
	at := req.Spec
	if err := req.SpecErr; err != nil {
		return executors.Result{}, err
	}
	var progress Progress
	if e.Progress != nil {
		progress = e.Progress(ctx, a.Address)
	}
	img, err := e.Cache.Create(ctx, Template{Source: at.Source, SHA256: at.SHA256}, progress)
	if err != nil {
		return executors.Result{}, AttrError(a.Address, "source", err)
	}
	if at.Format != "" && at.Format != img.Format {
		return executors.Result{}, fmt.Errorf("%s: format is %q but %s holds a %s image", a.Address, at.Format, at.Source, img.Format)
	}
	return e.result(a, img), nil
}

// result is the image's attributes. sha256 and format are set when the
// template sets them (to what is really cached); left out otherwise, so an
// unset optional attribute does not read as a change.
func (e Executor) result(a executors.Instance, img Image) executors.Result {
	c := map[string]any{"id": img.SHA256, "size": img.Size}
	if _, ok := a.Attrs["sha256"]; ok {
		c["sha256"] = img.SHA256
	}
	if _, ok := a.Attrs["format"]; ok {
		c["format"] = img.Format
	}
	return executors.Result{PhysicalName: img.Volume, Attrs: e.Host.WithComputed(a, c)}
}

// Update only makes sure the image is cached: every attribute of an image
// forces a replacement.
func (e Executor) Update(ctx context.Context, req executors.Request[kinds.ImageAttrs]) (executors.Result, error) {
	return e.Create(ctx, req)
}

// Delete keeps the cached file (see Executor).
func (e Executor) Delete(ctx context.Context, _ executors.Request[kinds.ImageAttrs]) error {
	return ctx.Err()
}

// Read finds the image in the cache by its id, or by the sha256 the
// template sets.
func (e Executor) Read(ctx context.Context, req executors.Request[kinds.ImageAttrs]) (executors.Result, bool, error) {
	a := req.Instance
	sum := a.ID
	if sum == "" || (a.Op == executors.OpCreate && a.Generation != "") {
		// Only the sha256 matters to a read.
		if err := kinds.For(req.SpecErr, "sha256"); err != nil {
			return executors.Result{}, false, err
		}
		sum = req.Spec.SHA256
	}
	if sum == "" {
		// Without a sha256 the image is whatever the source holds now:
		// only a fetch can tell.
		return executors.Result{}, false, nil
	}
	img, err := e.Cache.Read(ctx, sum)
	if gone, err := host.Absent(err); gone || err != nil {
		return executors.Result{}, false, err
	}
	return e.result(a, img), true, nil
}

// CachedImages lists the sha256 of every cached image.
func (e Executor) CachedImages(ctx context.Context) ([]string, error) {
	imgs, err := e.Cache.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(imgs))
	for _, i := range imgs {
		out = append(out, i.SHA256)
	}
	return out, nil
}
