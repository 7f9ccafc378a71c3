package realprocess

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// The benchmarks run against three kiln server processes on loopback. A
// committed write is a token creation (one raft command, acknowledged once
// a quorum has it on disk). Run them with a fixed count, for example:
//
//	go test -run ^$ -bench . -benchtime 2000x ./daemon/realprocess
//	go test -run ^$ -bench Failover -benchtime 5x ./daemon/realprocess
//
// The three servers share this machine's cores, where in a real cluster
// each has a machine to itself: the write benchmarks give each server its
// share of the cores (GOMAXPROCS, at least one; see benchCluster).

// benchCluster starts the trio of a write benchmark, each server with
// GOMAXPROCS set to its share of the cores. With the Go default (every core
// for each of the three runtimes) they oversubscribe the machine: on two
// cores the servers spent 8-45% more CPU per concurrent write (a fifth in
// the median of paired runs), in the schedulers' threads spinning and
// waking for cores the other processes hold, than with one each. KILN_BENCH_SERVER_PROCS sets another value; 0 keeps
// the Go default.
func benchCluster(b *testing.B) *cluster {
	kiln(b) // built first, with the default
	procs := max(1, runtime.NumCPU()/3)
	if v := os.Getenv("KILN_BENCH_SERVER_PROCS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("KILN_BENCH_SERVER_PROCS=%q: want a number of cores, 0 for Go's default", v)
		}
		procs = n
	}
	if procs > 0 {
		// Read by the servers at start; this process keeps its own.
		b.Setenv("GOMAXPROCS", strconv.Itoa(procs))
	}
	return newCluster(b)
}

func benchWrite(b *testing.B, c *cluster, skip ...int) func(i int64) error {
	cl := c.client(skip...)
	return func(i int64) error {
		_, err := cl.CreateToken(context.Background(), api.TokenRequest{Project: "bench", Role: "reader", Name: fmt.Sprint(i)})
		return err
	}
}

// BenchmarkWritesSerial: one client, one write at a time, sent to the
// leader (no forwarding hop).
func BenchmarkWritesSerial(b *testing.B) {
	c := benchCluster(b)
	w := c.newWriter(b, c.leader())
	b.ResetTimer()
	m := c.startMeasure()
	for i := 0; i < b.N; i++ {
		if err := w.write(int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	c.report(b, m)
}

// BenchmarkWritesConcurrent: 64 clients writing at once to the leader (its
// store proposes what arrives together as one log entry).
func BenchmarkWritesConcurrent(b *testing.B) {
	c := benchCluster(b)
	leader := c.leader()
	benchConcurrent(b, c, func(int) int { return leader })
}

// BenchmarkWritesForwardedConcurrent: the same 64 clients, but they know
// only the two followers (half of them each), which forward every write to
// the leader.
func BenchmarkWritesForwardedConcurrent(b *testing.B) {
	c := benchCluster(b)
	followers := otherThan(c.leader())
	benchConcurrent(b, c, func(k int) int { return followers[k%len(followers)] })
}

// benchConcurrent runs 64 clients, client k writing to server target(k).
func benchConcurrent(b *testing.B, c *cluster, target func(k int) int) {
	var n, clients atomic.Int64
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism(max(1, (64+procs-1)/procs)) // RunParallel starts parallelism x GOMAXPROCS goroutines
	b.ResetTimer()
	m := c.startMeasure()
	b.RunParallel(func(pb *testing.PB) {
		w := c.newWriter(b, target(int(clients.Add(1))))
		defer w.close()
		for pb.Next() {
			if err := w.write(n.Add(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	c.report(b, m)
}

// writer is one benchmark client: one kept-alive HTTP/1.1 connection to a
// server, on which it sends token creations one at a time and reads each
// answer whole. It measures the servers, not a client library: kiln's
// client over net/http spent about 80µs of CPU per write here (a third of
// what the three servers spent), on the cores the servers share. Like that
// client it tries again, after a pause, when the server cannot serve now
// (503: an election under way) or the connection breaks.
type writer struct {
	addr, token string
	conn        net.Conn
	br          *bufio.Reader
	buf         []byte
}

func (c *cluster) newWriter(b *testing.B, server int) *writer {
	w := &writer{addr: c.nodes[server].http, token: c.token}
	if err := w.dial(); err != nil {
		b.Fatal(err)
	}
	return w
}

func (w *writer) dial() error {
	conn, err := net.Dial("tcp", w.addr)
	if err != nil {
		return err
	}
	w.conn, w.br = conn, bufio.NewReader(conn)
	return nil
}

func (w *writer) close() {
	if w.conn != nil {
		w.conn.Close()
	}
}

// write creates the token named i: 201 with the token's secret.
func (w *writer) write(i int64) error {
	var err error
	for range 40 {
		var retry bool
		if retry, err = w.try(i); !retry {
			return err
		}
		time.Sleep(50 * time.Millisecond)
		if w.conn == nil {
			w.dial() // an error shows at the next try
		}
	}
	return err
}

// try sends the write once; retry says whether to try again.
func (w *writer) try(i int64) (retry bool, err error) {
	if w.conn == nil {
		return true, fmt.Errorf("write %d: no connection to %s", i, w.addr)
	}
	body := fmt.Sprintf(`{"project":"bench","role":"reader","name":"%d"}`, i)
	w.buf = fmt.Appendf(w.buf[:0], "POST /v1/tokens HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", w.addr, w.token, len(body), body)
	var resp *http.Response
	_, err = w.conn.Write(w.buf)
	if err == nil {
		resp, err = http.ReadResponse(w.br, nil)
	}
	if err != nil {
		w.close()
		w.conn = nil
		return true, fmt.Errorf("write %d: %w", i, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Close {
		w.close()
		w.conn = nil
	}
	switch {
	case err != nil:
		return true, fmt.Errorf("write %d: %w", i, err)
	case resp.StatusCode == http.StatusServiceUnavailable:
		return true, fmt.Errorf("write %d: %s: %s", i, resp.Status, data)
	case resp.StatusCode != http.StatusCreated:
		return false, fmt.Errorf("write %d: %s: %s", i, resp.Status, data)
	case !bytes.Contains(data, []byte(`"secret": "kiln_`)):
		return false, fmt.Errorf("write %d: an answer without the token's secret: %s", i, data)
	}
	return false, nil
}

// measure is what report compares with: when the timed writes started,
// the CPU time the servers, the leader among them and this process had
// used, and the leader's raft index.
type measure struct {
	start               time.Time
	server, leader, own time.Duration
	leaderNode          int
	index               uint64
}

func (c *cluster) startMeasure() measure {
	l := c.leader()
	return measure{start: time.Now(), server: c.serverCPU(), leader: c.nodeCPU(l), leaderNode: l,
		own: ownCPU(), index: c.leaderIndex()}
}

// report gives the writes per second; the CPU time the three server
// processes spent per write (on a machine whose cores are shared, it says
// what a change cost or saved when the rate is noisy); the CPU time of the
// benchmark's own clients per write (they share the cores with the
// servers); and the writes per raft log entry (group commit at work).
func (c *cluster) report(b *testing.B, m measure) {
	b.ReportMetric(float64(b.N)/time.Since(m.start).Seconds(), "writes/s")
	if used := c.serverCPU() - m.server; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "server-cpu-us/write")
		// The leader's share; the rest is the two followers'.
		if lused := c.nodeCPU(m.leaderNode) - m.leader; lused > 0 && m.leader > 0 {
			b.ReportMetric(float64(lused.Microseconds())/float64(b.N), "leader-cpu-us/write")
		}
	}
	if used := ownCPU() - m.own; used > 0 {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N), "client-cpu-us/write")
	}
	if idx := c.leaderIndex(); idx > m.index {
		b.ReportMetric(float64(b.N)/float64(idx-m.index), "writes/entry")
	}
}

// leaderIndex is the raft index the leader has applied, 0 when unknown.
func (c *cluster) leaderIndex() uint64 {
	i := c.leader()
	if i < 0 {
		return 0
	}
	h, err := c.client().HealthOf(context.Background(), c.nodes[i].http)
	if err != nil {
		return 0
	}
	return h.Index
}

// ownCPU is the user and system CPU time of this process.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU sums the user and system CPU time of the running servers
// (/proc/PID/stat, in clock ticks of 10ms); 0 when it cannot be read.
func (c *cluster) serverCPU() time.Duration {
	var total time.Duration
	for i := range c.nodes {
		used := c.nodeCPU(i)
		if used == 0 {
			return 0
		}
		total += used
	}
	return total
}

// nodeCPU is the user and system CPU time of server i; 0 when it cannot
// be read (or i is not a server).
func (c *cluster) nodeCPU(i int) time.Duration {
	if i < 0 || i >= len(c.nodes) {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.nodes[i].p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkFailover: SIGKILL the leader, time until a write through the
// two others is committed (default raft timeouts); the killed server is
// restarted (untimed) before the next round.
func BenchmarkFailover(b *testing.B) {
	c := newCluster(b)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		leader := c.leader()
		for leader < 0 {
			time.Sleep(50 * time.Millisecond)
			leader = c.leader()
		}
		write := benchWrite(b, c, leader)
		killed := time.Now()
		c.nodes[leader].p.kill()
		if !testwait.Until(time.Minute, 0, func() bool { return write(int64(i)) == nil }) {
			b.Fatal("no leader accepted a write within a minute")
		}
		d := time.Since(killed)
		total += d
		b.StopTimer()
		c.startNode(leader)
		testwait.For(b, 60*time.Second, "the killed server back", func() bool {
			h, err := c.client().HealthOf(context.Background(), c.nodes[leader].http)
			return err == nil && h.NodeID != ""
		})
		time.Sleep(time.Second) // let it catch up
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()*1000/float64(b.N), "ms/failover")
}

func otherThan(i int) []int {
	var out []int
	for k := 0; k < 3; k++ {
		if k != i {
			out = append(out, k)
		}
	}
	return out
}
