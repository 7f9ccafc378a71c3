package kinds

// ImageAttrs are an image's configured attributes. Its id is its sha256:
// the cache is content-addressed and shared by every stack of a host.
type ImageAttrs struct {
	Source string `attr:"source,required"`
	SHA256 string `attr:"sha256"`
	Format string `attr:"format"`
}
