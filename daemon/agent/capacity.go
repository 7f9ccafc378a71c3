package agent

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/kiln-dev/kiln/daemon/api"
)

// Capacity measures this host: its CPUs, its total memory (/proc/meminfo)
// and the free space of the file system holding dataDir.
func Capacity(dataDir string) api.Capacity {
	c := api.Capacity{CPUs: runtime.NumCPU(), MemoryBytes: memTotal()}
	var st syscall.Statfs_t
	if syscall.Statfs(dataDir, &st) == nil {
		c.DiskBytes = int64(st.Bavail) * int64(st.Bsize)
	}
	return c
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
