package cloudinit

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"
)

// isoImage is what readISO finds in an image: the volume labels and the root
// directory of each tree, file name to contents.
type isoImage struct {
	label, jolietLabel string
	primary, joliet    map[string][]byte
}

// readISO parses img independently of the writer, following ECMA-119: the
// volume descriptors from sector 16, each tree's root directory record, and
// the directory's records.
func readISO(t *testing.T, img []byte) isoImage {
	t.Helper()
	if len(img)%sectorSize != 0 {
		t.Fatalf("image size %d is not a multiple of %d", len(img), sectorSize)
	}
	sector := func(lba uint32) []byte {
		off := int(lba) * sectorSize
		if off+sectorSize > len(img) {
			t.Fatalf("sector %d beyond the image (%d bytes)", lba, len(img))
		}
		return img[off : off+sectorSize]
	}
	var out isoImage
	for lba := uint32(16); ; lba++ {
		d := sector(lba)
		if string(d[1:6]) != "CD001" || d[6] != 1 {
			t.Fatalf("sector %d: no volume descriptor", lba)
		}
		if d[0] == 255 {
			break
		}
		if got := binary.LittleEndian.Uint32(d[80:]); int(got)*sectorSize != len(img) {
			t.Errorf("volume space size %d sectors, image has %d", got, len(img)/sectorSize)
		}
		if binary.LittleEndian.Uint32(d[80:]) != binary.BigEndian.Uint32(d[84:]) {
			t.Errorf("volume space size: little and big endian differ")
		}
		if binary.LittleEndian.Uint16(d[128:]) != sectorSize {
			t.Errorf("logical block size %d", binary.LittleEndian.Uint16(d[128:]))
		}
		root := d[156:190]
		switch {
		case d[0] == 1:
			out.label = strings.TrimRight(string(d[40:72]), " ")
			out.primary = readDir(t, sector, root, false)
			checkPathTable(t, sector, d, root)
		case d[0] == 2 && string(d[88:91]) == "%/E":
			out.jolietLabel = strings.TrimRight(fromUCS2(d[40:72]), " \x00")
			out.joliet = readDir(t, sector, root, true)
			checkPathTable(t, sector, d, root)
		}
	}
	return out
}

func checkPathTable(t *testing.T, sector func(uint32) []byte, d, root []byte) {
	t.Helper()
	size := binary.LittleEndian.Uint32(d[132:])
	l := sector(binary.LittleEndian.Uint32(d[140:]))[:size]
	m := sector(binary.BigEndian.Uint32(d[148:]))[:size]
	rootLBA := binary.LittleEndian.Uint32(root[2:])
	if l[0] != 1 || binary.LittleEndian.Uint32(l[2:]) != rootLBA || binary.LittleEndian.Uint16(l[6:]) != 1 {
		t.Errorf("L path table % x does not name the root at %d", l, rootLBA)
	}
	if m[0] != 1 || binary.BigEndian.Uint32(m[2:]) != rootLBA || binary.BigEndian.Uint16(m[6:]) != 1 {
		t.Errorf("M path table % x does not name the root at %d", m, rootLBA)
	}
}

func readDir(t *testing.T, sector func(uint32) []byte, root []byte, joliet bool) map[string][]byte {
	t.Helper()
	if root[25]&2 == 0 {
		t.Fatalf("root record is not a directory")
	}
	lba := binary.LittleEndian.Uint32(root[2:])
	size := binary.LittleEndian.Uint32(root[10:])
	if binary.BigEndian.Uint32(root[6:]) != lba || binary.BigEndian.Uint32(root[14:]) != size {
		t.Fatalf("root record: little and big endian differ")
	}
	dir := sector(lba)[:size]
	files := map[string][]byte{}
	var prev []byte
	for off, n := 0, 0; off < len(dir); n++ {
		l := int(dir[off])
		if l == 0 {
			break
		}
		r := dir[off : off+l]
		off += l
		id := r[33 : 33+int(r[32])]
		if n < 2 {
			if len(id) != 1 || id[0] != byte(n) {
				t.Errorf("record %d: id % x, want %d", n, id, n)
			}
			continue
		}
		if prev != nil && bytes.Compare(prev, id) >= 0 {
			t.Errorf("records not sorted: %q before %q", prev, id)
		}
		prev = id
		name := string(id)
		if joliet {
			name = fromUCS2(id)
		}
		ext := binary.LittleEndian.Uint32(r[2:])
		fsize := binary.LittleEndian.Uint32(r[10:])
		data := make([]byte, 0, fsize)
		for s := ext; uint32(len(data)) < fsize; s++ {
			need := fsize - uint32(len(data))
			sec := sector(s)
			if need < sectorSize {
				sec = sec[:need]
			}
			data = append(data, sec...)
		}
		files[name] = data
	}
	return files
}

func fromUCS2(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

func TestWriteISORoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300) // spans three sectors
	files := []isoFile{
		{"user-data", []byte("#cloud-config\n")},
		{"meta-data", []byte("instance-id: i-1\n")},
		{"network-config", []byte("version: 2\n")},
		{"vendor-data", nil},
		{"big.file", big},
	}
	img, err := writeISO("cidata", files)
	if err != nil {
		t.Fatal(err)
	}
	got := readISO(t, img)
	if got.label != "cidata" || got.jolietLabel != "cidata" {
		t.Errorf("labels %q / %q, want cidata", got.label, got.jolietLabel)
	}
	if len(got.joliet) != len(files) {
		t.Errorf("joliet tree has %d files, want %d", len(got.joliet), len(files))
	}
	for _, f := range files {
		if !bytes.Equal(got.joliet[f.name], f.data) {
			t.Errorf("joliet %s = %q, want %q", f.name, got.joliet[f.name], f.data)
		}
	}
	wantPrimary := map[string]string{
		"META_DAT.;1": "meta-data", "USER_DAT.;1": "user-data", "NETWORK_.;1": "network-config",
		"VENDOR_D.;1": "vendor-data", "BIG.FIL;1": "big.file",
	}
	for short, long := range wantPrimary {
		if d, ok := got.primary[short]; !ok {
			t.Errorf("primary tree lacks %s (have %v)", short, keys(got.primary))
		} else if !bytes.Equal(d, got.joliet[long]) {
			t.Errorf("primary %s differs from joliet %s", short, long)
		}
	}

	again, _ := writeISO("cidata", files)
	if !bytes.Equal(img, again) {
		t.Errorf("two writes of the same files differ")
	}
}

func TestWriteISORefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		label string
		files []isoFile
	}{
		{"no files", "cidata", nil},
		{"no label", "", []isoFile{{"a", nil}}},
		{"slash", "cidata", []isoFile{{"a/b", nil}}},
		{"duplicate", "cidata", []isoFile{{"a", nil}, {"a", nil}}},
		{"long", "cidata", []isoFile{{strings.Repeat("x", 65), nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := writeISO(tc.label, tc.files); err == nil {
				t.Errorf("writeISO accepted it")
			}
		})
	}
}

func TestShortNamesAreUnique(t *testing.T) {
	used := map[string]bool{}
	a := shortName("network-config", used)
	b := shortName("network-config2", used)
	if a == b {
		t.Errorf("both names map to %s", a)
	}
	if a != "NETWORK_." || b != "NETWOR_1." {
		t.Errorf("got %s, %s", a, b)
	}
}

// TestBlkidReadsLabel checks the image with util-linux's blkid, which is what
// cloud-init itself runs to find its seed.
func TestBlkidReadsLabel(t *testing.T) {
	blkid, err := exec.LookPath("blkid")
	if err != nil {
		t.Fatalf("blkid not found (install util-linux): %v", err)
	}
	img, err := Seed{Hostname: "probe-0"}.ISO()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(blkid, "-p", "-o", "export", p).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid %s: %v\n%s", p, err, out)
	}
	s := string(out)
	if !strings.Contains(s, "\nLABEL=cidata\n") || !strings.Contains(s, "\nTYPE=iso9660\n") {
		t.Errorf("blkid says:\n%s\nwant LABEL=cidata and TYPE=iso9660", s)
	}
}

func keys(m map[string][]byte) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}
