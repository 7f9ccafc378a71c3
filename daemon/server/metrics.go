package server

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kiln-dev/kiln/raftstore"
)

// metrics are the server's Prometheus metrics, on a registry of its own (so
// that several servers can live in one test process).
type metrics struct {
	reg        *prometheus.Registry
	applies    *prometheus.CounterVec
	operations *prometheus.CounterVec
	actions    *prometheus.CounterVec
	requests   *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_raft_applies_total", Help: "Commands proposed to raft by this server, by result.",
		}, []string{"result"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_operations_total", Help: "Operations finished by this server as leader, by kind and status.",
		}, []string{"kind", "status"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_actions_total", Help: "Agent requests finished by this server as leader, by op and result.",
		}, []string{"op", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_http_requests_total", Help: "HTTP requests, by route and status code.",
		}, []string{"route", "code"}),
	}
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kiln_raft_leader", Help: "1 when this server is the raft leader.",
	}, func() float64 {
		if s.IsLeader() {
			return 1
		}
		return 0
	})
	// fromStore reads a figure of the server's store: 0 while it has none.
	fromStore := func(read func(*raftstore.Store) uint64) func() float64 {
		return func() float64 {
			if s.store == nil {
				return 0
			}
			return float64(read(s.store))
		}
	}
	index := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kiln_state_index", Help: "Index of the last command applied to this server's state.",
	}, fromStore(func(st *raftstore.Store) uint64 { return st.State().Index() }))
	entries := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "kiln_raft_entries_total", Help: "Raft log entries this server proposed: one per command alone, one per group of commands committed together.",
	}, fromStore((*raftstore.Store).Entries))
	wakeups := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "kiln_state_wakeups_total", Help: "Waits on this server's state (blocking queries, the leader's waits for reports) woken by a change.",
	}, fromStore(func(st *raftstore.Store) uint64 { return st.State().Wakeups() }))
	m.reg.MustRegister(m.applies, m.operations, m.actions, m.requests, leader, index, entries, wakeups,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// statusWriter remembers the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metrics) count(route string, code int) {
	if code == 0 {
		code = http.StatusOK
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}
