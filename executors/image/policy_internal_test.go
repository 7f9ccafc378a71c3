package image

import (
	"errors"
	"net/http"
	"testing"
)

// The scheme rule on redirects: an https source that redirects to http://
// is refused without a sha256 (a real TLS source is not at hand in the
// test namespace; the dial and hop-count rules are tested end to end in
// policy_test.go).
func TestRedirectDowngrade(t *testing.T) {
	req := func(u string) *http.Request {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	via := []*http.Request{req("https://images.example.org/a.qcow2")}
	check := func(p Policy, sum string) error {
		return p.client(nil, sum).CheckRedirect(req("http://images.example.org/a.qcow2"), via)
	}
	var pe *PolicyError
	if err := check(Policy{}, ""); !errors.As(err, &pe) || pe.Rule != RuleInsecureHTTP {
		t.Errorf("https -> http without sha256: %v, want an insecure-http refusal", err)
	}
	if err := check(Policy{}, "ab"); err != nil {
		t.Errorf("https -> http with sha256: %v", err)
	}
	if err := check(Policy{AllowInsecureHTTP: true}, ""); err != nil {
		t.Errorf("https -> http allowed: %v", err)
	}
	if err := (Policy{}).client(nil, "").CheckRedirect(req("https://images.example.org/b"), via); err != nil {
		t.Errorf("https -> https: %v", err)
	}
}
