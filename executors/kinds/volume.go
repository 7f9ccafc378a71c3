package kinds

// VolumeAttrs are a volume's configured attributes. Its id is its name in
// the kiln-volumes pool (VolumeName). Size is required to create one; an
// empty Format is qcow2.
type VolumeAttrs struct {
	Size   int64  `attr:"size"`
	Format string `attr:"format"`
}
