package server

import (
	"net/http"
	runpprof "runtime/pprof"

	"net/http/pprof"
)

// handlePprof serves Go's profiles of this server (GET
// /debug/pprof/{profile}: profile (CPU, ?seconds=N), trace, heap, goroutine,
// allocs, block, mutex, threadcreate), to a global admin token only: a
// profile shows the process's inner workings. It is served by the server
// asked, never forwarded, so that each node can be profiled.
func (s *Server) handlePprof(w http.ResponseWriter, r *http.Request) error {
	switch name := r.PathValue("profile"); name {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	default:
		if runpprof.Lookup(name) == nil {
			return errf(http.StatusNotFound, "no profile %q (profile, trace, heap, goroutine, allocs, block, mutex, threadcreate)", name)
		}
		pprof.Handler(name).ServeHTTP(w, r)
	}
	return nil
}
