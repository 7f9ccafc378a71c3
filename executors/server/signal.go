package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Signals is the host side of the `signal` readiness check, Heat's wait
// condition: every server gets a ready URL on the gateway of its first
// network, holding a secret that only that server knows (an HMAC of its
// domain name under a key private to this host), and is ready once it has
// called it. A call with any other secret is refused and counts for
// nothing.
//
// The listeners run on the gateway addresses of kiln's bridges only (never
// on a wildcard address), one per gateway, started when a server waits
// for a signal. The calls received are kept in a file, so that an agent
// restarted in the middle of a wait still knows the guest called.
type Signals struct {
	port int
	key  []byte
	file string
	log  *slog.Logger

	mu        sync.Mutex
	listeners map[string]*http.Server // by gateway address
	got       map[string]time.Time    // by server (domain) name
}

// DefaultSignalPort is the port of the ready URLs (the port of OpenStack's
// metadata service).
const DefaultSignalPort = 8775

// signalPath is the path prefix of ready URLs: /kiln/ready/NAME/SECRET.
const signalPath = "/kiln/ready/"

// OpenSignals loads (or makes) the host's key in dataDir/ready-key and the
// calls received so far.
func OpenSignals(dataDir string, port int, log *slog.Logger) (*Signals, error) {
	if port <= 0 {
		port = DefaultSignalPort
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("ready signals: %w", err)
	}
	kf := filepath.Join(dataDir, "ready-key")
	key, err := os.ReadFile(kf)
	if err != nil || len(key) < 32 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("ready signals: key: %w", err)
		}
		if err := writeFileAtomic(kf, key, 0o600); err != nil {
			return nil, fmt.Errorf("ready signals: key: %w", err)
		}
	}
	s := &Signals{port: port, key: key, file: filepath.Join(dataDir, "ready-signals.json"), log: log,
		listeners: map[string]*http.Server{}, got: map[string]time.Time{}}
	if data, err := os.ReadFile(s.file); err == nil {
		_ = json.Unmarshal(data, &s.got)
	}
	return s, nil
}

// Secret is the server's secret: 32 hex digits of an HMAC of its name.
func (s *Signals) Secret(server string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(server))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// URL is the ready URL of a server whose first network has gateway gw.
func (s *Signals) URL(gw, server string) string {
	return "http://" + net.JoinHostPort(gw, strconv.Itoa(s.port)) + signalPath + server + "/" + s.Secret(server)
}

// Listen serves ready URLs on gw (an address of this host), once.
func (s *Signals) Listen(gw string) error {
	addr, err := netip.ParseAddr(gw)
	if err != nil || addr.IsUnspecified() {
		return fmt.Errorf("ready signals: %q is not a gateway address", gw)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.listeners[gw]; ok {
		return nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(gw, strconv.Itoa(s.port)))
	if err != nil {
		return fmt.Errorf("ready signals: listen on %s port %d: %w", gw, s.port, err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	s.listeners[gw] = srv
	go srv.Serve(ln)
	return nil
}

// ServeHTTP takes a guest's call: POST (or GET) /kiln/ready/NAME/SECRET.
func (s *Signals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet && r.Method != http.MethodPut {
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, signalPath)
	name, secret, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || name == "" || strings.Contains(secret, "/") {
		http.NotFound(w, r)
		return
	}
	if !hmac.Equal([]byte(secret), []byte(s.Secret(name))) {
		s.log.Warn("ready signal refused: wrong secret", "server", name, "from", r.RemoteAddr)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	s.record(name, time.Now())
	s.log.Info("ready signal", "server", name, "from", r.RemoteAddr)
	fmt.Fprintln(w, "ok")
}

func (s *Signals) record(name string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[name] = t.UTC()
	s.persistLocked()
}

func (s *Signals) persistLocked() {
	data, err := json.Marshal(s.got)
	if err == nil {
		err = writeFileAtomic(s.file, data, 0o600)
	}
	if err != nil {
		s.log.Warn("ready signals: save", "err", err)
	}
}

// Signalled is when the server last called its ready URL (zero: never).
func (s *Signals) Signalled(server string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[server]
}

// Forget drops what is known of a deleted server.
func (s *Signals) Forget(server string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.got[server]; ok {
		delete(s.got, server)
		s.persistLocked()
	}
}

// Close stops the listeners.
func (s *Signals) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for gw, srv := range s.listeners {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		errs = append(errs, srv.Shutdown(ctx))
		cancel()
		delete(s.listeners, gw)
	}
	return errors.Join(errs...)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), mode)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
