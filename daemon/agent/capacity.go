package agent

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/kiln-dev/kiln/api"
)

// Capacity is what the agent reports of its host: the host measured (its
// CPUs, its total memory from /proc/meminfo, the free space of the file
// system holding cfg.DataDir) with cfg's allocation ratios and accelerator,
// and the host-port policy of the real drivers.
func Capacity(cfg Config) api.Capacity {
	c := api.Capacity{
		CPUs: runtime.NumCPU(), MemoryBytes: memTotal(),
		CPURatio: cfg.CPURatio, MemoryRatio: cfg.MemoryRatio,
		Accel: cfg.Accel, AccelReason: cfg.AccelReason,
	}
	// The real drivers' accelerator can change while the agent runs (an
	// auto agent turns to TCG when a guest dies of a KVM internal error).
	if a, why := Accel(cfg.Drivers); a != "" {
		c.Accel, c.AccelReason = a, why
	}
	// The host ports port forwards may use (the servers check them at plan
	// time); drivers that forward nothing on the host say nothing.
	// Only the reserved ports inside the range matter (the others are
	// refused anyway), at most as many as the servers take.
	if rng, reserved, ok := HostPorts(cfg.Drivers); ok {
		c.HostPortsLo, c.HostPortsHi = rng.Lo, rng.Hi
		for _, p := range reserved {
			if rng.Contains(p) && len(c.ReservedPorts) < api.MaxReservedPorts {
				c.ReservedPorts = append(c.ReservedPorts, p)
			}
		}
	}
	var st syscall.Statfs_t
	if syscall.Statfs(cfg.DataDir, &st) == nil {
		c.DiskBytes = int64(st.Bavail) * int64(st.Bsize)
	}
	return c
}

// Accelerators an agent reports (Config.Accel).
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// checkCapacity checks the ratios (when set) and the accelerator of cfg.
func (cfg Config) checkCapacity() error {
	if cfg.CPURatio != 0 {
		if err := api.CheckRatio("cpu ratio", cfg.CPURatio, api.MaxCPURatio); err != nil {
			return err
		}
	}
	if cfg.MemoryRatio != 0 {
		if err := api.CheckRatio("memory ratio", cfg.MemoryRatio, api.MaxMemoryRatio); err != nil {
			return err
		}
	}
	switch cfg.Accel {
	case "", AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("accelerator %q: want %s or %s", cfg.Accel, AccelKVM, AccelTCG)
	}
	return nil
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}
