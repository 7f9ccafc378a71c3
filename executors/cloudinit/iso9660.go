package cloudinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf16"
)

// This file writes a minimal ISO 9660 image: one root directory holding a few
// small files, described twice — by the primary volume descriptor with 8.3
// upper-case names, and by a Joliet supplementary descriptor with the real
// names ("meta-data", "network-config") that Linux's isofs, blkid and
// cloud-init read. Both directory trees point at the same file extents. The
// output depends only on the input: every date is the Unix epoch.

const sectorSize = 2048

// isoFile is one file of the root directory.
type isoFile struct {
	name string
	data []byte
}

// Sector layout of the image.
const (
	lbaPVD        = 16
	lbaJoliet     = 17
	lbaTerminator = 18
	lbaPathL      = 19 // primary, little-endian
	lbaPathM      = 20 // primary, big-endian
	lbaJPathL     = 21 // Joliet, little-endian
	lbaJPathM     = 22 // Joliet, big-endian
	lbaRoot       = 23 // primary root directory
	lbaJRoot      = 24 // Joliet root directory
	lbaFirstFile  = 25
)

// pathTableSize is the size of a path table that holds only the root.
const pathTableSize = 10

// padSectors of zeros end the image, as genisoimage's -pad does: Linux's
// CD-ROM drivers fail reads that reach the last sectors of a disc, and
// blkid-like probes (busybox findfs) read 68 KiB from the start at once.
const padSectors = 150

// writeISO returns an ISO 9660 image with Joliet names, volume label label,
// and files in its root directory.
func writeISO(label string, files []isoFile) ([]byte, error) {
	if label == "" || len(label) > 16 {
		return nil, fmt.Errorf("iso label %q: want 1 to 16 characters", label)
	}
	if len(files) == 0 {
		return nil, errors.New("iso: no files")
	}
	files = append([]isoFile(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })

	short := make([]string, len(files))
	used := map[string]bool{}
	for i, f := range files {
		if err := checkJolietName(f.name); err != nil {
			return nil, err
		}
		if i > 0 && files[i-1].name == f.name {
			return nil, fmt.Errorf("iso: duplicate file %q", f.name)
		}
		short[i] = shortName(f.name, used)
	}

	// Place the files.
	extent := make([]uint32, len(files))
	next := uint32(lbaFirstFile)
	for i, f := range files {
		extent[i] = next
		next += sectors(len(f.data))
	}
	total := next + padSectors

	// The two root directories; each must fit one sector.
	var root, jroot []byte
	root = append(root, dirRecord([]byte{0}, lbaRoot, sectorSize, true)...)
	root = append(root, dirRecord([]byte{1}, lbaRoot, sectorSize, true)...)
	jroot = append(jroot, dirRecord([]byte{0}, lbaJRoot, sectorSize, true)...)
	jroot = append(jroot, dirRecord([]byte{1}, lbaJRoot, sectorSize, true)...)
	type rec struct {
		id []byte
		i  int
	}
	prim := make([]rec, len(files))
	for i := range files {
		prim[i] = rec{[]byte(short[i] + ";1"), i}
	}
	sort.Slice(prim, func(a, b int) bool { return bytes.Compare(prim[a].id, prim[b].id) < 0 })
	for _, r := range prim {
		root = append(root, dirRecord(r.id, extent[r.i], uint32(len(files[r.i].data)), false)...)
	}
	for i, f := range files { // sorted by name; UCS-2 order equals byte order for these names
		jroot = append(jroot, dirRecord(ucs2(f.name), extent[i], uint32(len(f.data)), false)...)
	}
	if len(root) > sectorSize || len(jroot) > sectorSize {
		return nil, errors.New("iso: too many files for one directory sector")
	}

	img := make([]byte, int(total)*sectorSize)
	put := func(lba uint32, b []byte) { copy(img[int(lba)*sectorSize:], b) }

	put(lbaPVD, volumeDescriptor(1, label, total, lbaPathL, lbaPathM, lbaRoot))
	put(lbaJoliet, volumeDescriptor(2, label, total, lbaJPathL, lbaJPathM, lbaJRoot))
	put(lbaTerminator, append([]byte{255}, "CD001\x01"...))
	put(lbaPathL, pathTable(lbaRoot, binary.LittleEndian))
	put(lbaPathM, pathTable(lbaRoot, binary.BigEndian))
	put(lbaJPathL, pathTable(lbaJRoot, binary.LittleEndian))
	put(lbaJPathM, pathTable(lbaJRoot, binary.BigEndian))
	put(lbaRoot, root)
	put(lbaJRoot, jroot)
	for i, f := range files {
		put(extent[i], f.data)
	}
	return img, nil
}

func sectors(n int) uint32 { return uint32((n + sectorSize - 1) / sectorSize) }

// volumeDescriptor returns a primary (typ 1) or Joliet supplementary (typ 2)
// volume descriptor.
func volumeDescriptor(typ byte, label string, total, pathL, pathM, root uint32) []byte {
	d := make([]byte, sectorSize)
	d[0] = typ
	copy(d[1:], "CD001")
	d[6] = 1
	joliet := typ == 2
	text := func(off, size int, s string) {
		if joliet {
			b := ucs2(s)
			for i := 0; i+1 < size; i += 2 { // pad with UCS-2 spaces
				d[off+i], d[off+i+1] = 0, ' '
			}
			copy(d[off:off+size], b)
			return
		}
		copy(d[off:off+size], padRight(s, size))
	}
	text(8, 32, "LINUX") // system identifier
	text(40, 32, label)  // volume identifier
	bothEndian32(d[80:], total)
	if joliet {
		copy(d[88:], "%/E") // UCS-2 level 3
	}
	bothEndian16(d[120:], 1) // volume set size
	bothEndian16(d[124:], 1) // volume sequence number
	bothEndian16(d[128:], sectorSize)
	bothEndian32(d[132:], pathTableSize)
	binary.LittleEndian.PutUint32(d[140:], pathL)
	binary.BigEndian.PutUint32(d[148:], pathM)
	copy(d[156:190], dirRecord([]byte{0}, root, sectorSize, true))
	text(190, 128, "")     // volume set identifier
	text(318, 128, "")     // publisher
	text(446, 128, "")     // data preparer
	text(574, 128, "KILN") // application
	text(702, 36, "")      // copyright file (37 bytes; even size for UCS-2)
	text(739, 36, "")      // abstract file
	text(776, 36, "")      // bibliographic file
	epoch := "1970010100000000\x00"
	unset := "0000000000000000\x00"
	copy(d[813:], epoch) // creation
	copy(d[830:], epoch) // modification
	copy(d[847:], unset) // expiration
	copy(d[864:], unset) // effective
	d[881] = 1           // file structure version
	return d
}

// dirRecord returns one directory record.
func dirRecord(id []byte, extent, size uint32, dir bool) []byte {
	n := 33 + len(id)
	if n%2 == 1 {
		n++
	}
	r := make([]byte, n)
	r[0] = byte(n)
	bothEndian32(r[2:], extent)
	bothEndian32(r[10:], size)
	copy(r[18:25], []byte{70, 1, 1, 0, 0, 0, 0}) // 1970-01-01 00:00:00 UTC
	if dir {
		r[25] = 2
	}
	bothEndian16(r[28:], 1)
	r[32] = byte(len(id))
	copy(r[33:], id)
	return r
}

// pathTable returns a path table holding only the root directory.
func pathTable(root uint32, order binary.ByteOrder) []byte {
	t := make([]byte, pathTableSize)
	t[0] = 1 // identifier length
	order.PutUint32(t[2:], root)
	order.PutUint16(t[6:], 1) // parent: itself
	return t
}

func bothEndian16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func bothEndian32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func padRight(s string, n int) string {
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat(" ", n-len(s))
}

func ucs2(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// checkJolietName refuses names Joliet cannot hold.
func checkJolietName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("iso: bad file name %q", name)
	}
	if len(utf16.Encode([]rune(name))) > 64 {
		return fmt.Errorf("iso: file name %q longer than 64 characters", name)
	}
	if strings.ContainsAny(name, "*/:;?\\\x00") {
		return fmt.Errorf("iso: file name %q holds a character Joliet forbids", name)
	}
	return nil
}

// shortName maps name to a unique ISO 9660 level 1 name (8.3, d-characters).
func shortName(name string, used map[string]bool) string {
	clean := func(s string, n int) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			if b.Len() == n {
				break
			}
			if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '_' {
				b.WriteRune(r)
			} else {
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	b, e := clean(base, 8), clean(ext, 3)
	s := b + "." + e
	for k := 1; used[s]; k++ {
		suffix := fmt.Sprintf("~%d", k)
		s = clean(base, 8-len(suffix)) + strings.ReplaceAll(suffix, "~", "_") + "." + e
	}
	used[s] = true
	return s
}
