package spec

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits maps a unit suffix (lower case) to its multiplier. Every unit is
// binary: "64M", "64MB" and "64MiB" all mean 64 * 2^20 bytes, as qemu-img and
// libvirt read them.
var sizeUnits = map[string]int64{
	"":  1,
	"b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// ParseSize reads a size such as "512MiB", "10GiB", "1.5GiB", "64M", "1024K" or
// "4096" (bytes) and returns it in bytes. The result must be a positive whole
// number of bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("%q is not a size; write a number with a unit, such as \"512MiB\" or \"10GiB\"", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q; use B, K/KiB, M/MiB, G/GiB or T/TiB", s, t[i:])
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%q is too large", s)
		}
		if n == 0 {
			return 0, fmt.Errorf("%q is zero; a size must be positive", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size; write a number with a unit, such as \"1.5GiB\"", s)
	}
	return sizeFromFloat(s, f*float64(mult))
}

func sizeFromFloat(s string, f float64) (int64, error) {
	switch {
	case f <= 0:
		return 0, fmt.Errorf("%s is not positive; a size must be positive", s)
	case f >= math.MaxInt64:
		return 0, fmt.Errorf("%s is too large", s)
	case f != math.Trunc(f):
		return 0, fmt.Errorf("%s is not a whole number of bytes", s)
	}
	return int64(f), nil
}

// FormatSize renders a byte count with the largest binary unit that divides it
// exactly: 536870912 -> "512MiB", 1610612736 -> "1536MiB", 1000 -> "1000B".
func FormatSize(n int64) string {
	units := []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
