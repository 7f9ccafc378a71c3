package scheduler

// KindParallelism bounds the actions of one kind running at once, for the
// kinds whose actions are costly on a host: a guest boot takes a CPU for
// seconds (and libvirt serializes parts of it), an image download takes the
// network and the disk. The leader's engine applies it to each operation
// and every agent to what it runs; kinds not listed (a bridge, a volume, a
// port forward: a few system calls each) are bound only by the overall
// parallelism.
var KindParallelism = map[string]int{"server": 8, "image": 4}
