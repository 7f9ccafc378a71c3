package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Policy is what the operator of a host lets a template make the image
// cache read: a template is untrusted input, the agent that fetches runs as
// root. The zero Policy is the strict one: no local paths, no http://
// without a sha256, no source on a loopback, link-local or own address.
type Policy struct {
	// AllowDirs are the directories local paths (absolute paths given as
	// a source, a server's kernel or initrd) must lie under, after every
	// symbolic link is resolved. Empty: no local path is read.
	AllowDirs []string
	// AllowInsecureHTTP lets an http:// source without a sha256 be
	// fetched (its bytes could be anyone's on the way).
	AllowInsecureHTTP bool
	// AllowLocalSources lets sources be fetched from this host itself or
	// its link: loopback, unspecified (0.0.0.0/8, ::), link-local
	// (169.254.0.0/16 with the cloud metadata service, fe80::/10), the
	// known metadata addresses and every address of this host's
	// interfaces.
	AllowLocalSources bool
}

// MaxRedirects bounds the redirects a fetch follows; each hop is checked
// again (scheme and address).
const MaxRedirects = 5

// Rules of the policy, for PolicyError.Rule.
const (
	RuleLocalPath    = "local-path"
	RuleInsecureHTTP = "insecure-http"
	RuleLocalSource  = "local-source"
	RuleRedirects    = "redirects"
)

// ErrRefused is wrapped by every PolicyError.
var ErrRefused = errors.New("refused by the host's image policy")

// PolicyError says which rule of the policy refused a source.
type PolicyError struct {
	Rule   string // one of the Rule constants
	Detail string
}

func (e *PolicyError) Error() string { return e.Detail }

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *PolicyError) Unwrap() error { return ErrRefused }

func refused(rule, format string, args ...any) error {
	return &PolicyError{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// CheckLocalPath returns the real path of a local file the policy allows:
// path is made absolute and clean, every symbolic link is resolved, and the
// result must lie under one of AllowDirs (themselves resolved), so neither
// ".." nor a link pointing out of an allowed directory escapes it.
func (p Policy) CheckLocalPath(path string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("local path %q is not absolute", path)
	}
	if len(p.AllowDirs) == 0 {
		return "", refused(RuleLocalPath, "local path %s: this host reads no local paths for templates", path)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(path))
	if err != nil {
		// Do not tell what exists outside the allowed directories.
		if !p.under(filepath.Clean(path)) {
			return "", refused(RuleLocalPath, "local path %s is not under a directory this host allows (%s)", path, strings.Join(p.AllowDirs, ", "))
		}
		return "", err
	}
	if !p.under(real) {
		if real != filepath.Clean(path) {
			return "", refused(RuleLocalPath, "local path %s resolves to %s, which is not under a directory this host allows (%s)", path, real, strings.Join(p.AllowDirs, ", "))
		}
		return "", refused(RuleLocalPath, "local path %s is not under a directory this host allows (%s)", path, strings.Join(p.AllowDirs, ", "))
	}
	return real, nil
}

// under reports whether the resolved path real lies under an allowed
// directory.
func (p Policy) under(real string) bool {
	for _, d := range p.AllowDirs {
		if !filepath.IsAbs(d) {
			continue
		}
		rd, err := filepath.EvalSymlinks(filepath.Clean(d))
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(rd, real)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			continue
		}
		return true
	}
	return false
}

// openLocal opens a local source the policy allows. The path of the opened
// file is checked again through /proc/self/fd, so a link swapped in between
// the check and the open does not escape.
func (p Policy) openLocal(path string) (*os.File, error) {
	real, err := p.CheckLocalPath(path)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	if opened, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd()))); err == nil && !p.under(opened) {
		f.Close()
		return nil, refused(RuleLocalPath, "local path %s changed to %s while it was opened, which is not under a directory this host allows", path, opened)
	}
	return f, nil
}

// checkScheme refuses an http:// URL without a sha256 unless allowed.
func (p Policy) checkScheme(u string, sum string, scheme string) error {
	if scheme == "http" && sum == "" && !p.AllowInsecureHTTP {
		return refused(RuleInsecureHTTP, "%s: an http:// source needs a sha256 (or use https://)", u)
	}
	return nil
}

// metadata addresses of cloud providers outside the link-local ranges.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

var zeroNet = netip.MustParsePrefix("0.0.0.0/8")

// localAddr says why an address is this host's own or its link's, "" when
// it is not.
func localAddr(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsUnspecified(), a.Is4() && zeroNet.Contains(a):
		return "an unspecified address (this host)"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "a link-local address (cloud metadata lives there)"
	}
	for _, m := range metadataAddrs {
		if a == m {
			return "a cloud metadata address"
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range addrs {
			if n, ok := ia.(*net.IPNet); ok {
				if ha, ok := netip.AddrFromSlice(n.IP); ok && ha.Unmap() == a {
					return "an address of this host"
				}
			}
		}
	}
	return ""
}

// control is the dialer's check, run on the resolved address of every
// connection (so DNS cannot point a name at a refused address).
func (p Policy) control(network, address string, _ syscall.RawConn) error {
	if p.AllowLocalSources {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refused(RuleLocalSource, "cannot check the address %q of a source", address)
	}
	if why := localAddr(ap.Addr()); why != "" {
		return refused(RuleLocalSource, "the source's address %s is %s, which this host does not fetch from", ap.Addr(), why)
	}
	return nil
}

// transport is the HTTP transport of the cache's fetches: no proxy (the
// address check is on the connection the agent makes itself), every dial
// checked by the policy.
func (p Policy) transport() *http.Transport {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// client is the HTTP client of one fetch: at most MaxRedirects redirects,
// each checked by the scheme rule (an https source redirected to http://
// needs a sha256 too).
func (p Policy) client(tr http.RoundTripper, sum string) *http.Client {
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return refused(RuleRedirects, "%s: more than %d redirects", via[0].URL.Redacted(), MaxRedirects)
		}
		return p.checkScheme(req.URL.Redacted(), sum, req.URL.Scheme)
	}}
}

// policyOf unwraps the PolicyError inside an HTTP client error.
func policyOf(err error) error {
	var pe *PolicyError
	if errors.As(err, &pe) {
		return pe
	}
	return err
}

// openHTTP starts an http(s) fetch under the policy.
func (c *Cache) openHTTP(ctx context.Context, p Policy, source, sum, scheme string) (*http.Response, error) {
	if err := p.checkScheme(source, sum, scheme); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client(c.transport(), sum).Do(req)
	if err != nil {
		return nil, policyOf(err)
	}
	return resp, nil
}

// FlagOf is the agent flag that allows what a rule of the policy refused.
func FlagOf(rule string) string {
	switch rule {
	case RuleLocalPath:
		return "the agent's -allow-local-images DIR allows local paths under DIR"
	case RuleInsecureHTTP:
		return "set sha256, use https://, or start the agent with -allow-insecure-http"
	case RuleLocalSource:
		return "the agent's -allow-local-sources allows sources on this host and its link"
	}
	return "no flag allows it"
}

// AttrError turns a policy refusal of the attribute attr of the resource
// at address into an error naming the resource, the attribute and the
// agent flag that would allow it; other errors are wrapped with the
// address.
func AttrError(address, attr string, err error) error {
	var pe *PolicyError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: attribute %q: %w (%s)", address, attr, err, FlagOf(pe.Rule))
	}
	return fmt.Errorf("%s: %w", address, err)
}
