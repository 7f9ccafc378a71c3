package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/spec"
)

// FuzzDecodeRequest feeds arbitrary bodies to the API's request decoding
// (decode into every request type a handler reads) and, for a template that
// decodes, to what a plan does with it next (the stored bundle, the vars, the
// evaluation within small limits). Nothing may panic, and every refusal is a
// 4xx httpError or the template's diagnostics.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `[]`, `{"template":`, `{"templat": {}}`, `{"ttl": 5}`, `{} {}`, `{"a":1}x`,
		`{"template":{"bundle":{"main.hcl":"bmV0d29yayAibGFuIiB7IGNpZHIgPSAiMTAuMC4wLjAvMjQiIH0K"}}}`,
		`{"template":{"bundle":{"main.hcl":"bG9jYWxzIHsgYSA9IHJhbmdlKDEwMDAwMDApIH0K"},"vars":[{"name":"n","value":"3"}],"var_files":[{"name":"f","content":"bj0z"}],"env":{"x":"1"}},"ttl":"2h"}`,
		`{"template":{"bundle":{"../x":"AA==","main.hcl":"/w=="},"files":["main.hcl","nope"],"dir":"/etc"}}`,
		`{"plan_id":"abc","ttl":"-1s"}`, `{"destroy":true}`,
		`{"project":"p1","role":"admin","description":"ci"}`,
		`{"id":"a1","address":"10.0.0.1:1","capacity":{"cpus":-1,"memory_bytes":1e400}}`,
		`{"work_id":"w","status":"done","resource":{"attrs":{"x":[1,{"y":null}]}}}`,
		`{"operation":"op","message":"` + string(bytes.Repeat([]byte("x"), 300)) + `"}`,
		`{"node_id":"n1","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`,
		"{\"template\":{\"bundle\":{\"main.hcl\":\"\\u0000\"}}}",
	} {
		f.Add([]byte(seed))
	}
	targets := []func() any{
		func() any { return new(api.PlanRequest) },
		func() any { return new(api.ApplyRequest) },
		func() any { return new(api.DestroyRequest) },
		func() any { return new(api.RenewRequest) },
		func() any { return new(api.TokenRequest) },
		func() any { return new(api.AgentRegister) },
		func() any { return new(api.AgentHeartbeat) },
		func() any { return new(api.ActionReport) },
		func() any { return new(api.Event) },
		func() any { return new(api.JoinRequest) },
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, mk := range targets {
			for _, empty := range []bool{false, true} {
				v := mk()
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(body))
				r.Body = http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
				err := decode(r, v, empty)
				if err != nil {
					var he *httpError
					if !errors.As(err, &he) || he.code < 400 || he.code > 499 || he.msg == "" {
						t.Fatalf("decode %T: %v is not a 4xx httpError", v, err)
					}
					continue
				}
				switch req := v.(type) {
				case *api.PlanRequest:
					fuzzTemplate(t, &req.Template)
				case *api.ApplyRequest:
					_, _ = parseTTL("ttl", req.TTL)
					if req.Template != nil {
						fuzzTemplate(t, req.Template)
					}
				case *api.RenewRequest:
					_, _ = parseTTL("ttl", req.TTL)
				}
			}
		}
	})
}

// fuzzTemplate does with a decoded template what a plan does before the
// planner: store it and evaluate it.
func fuzzTemplate(t *testing.T, tmpl *api.Template) {
	sb, _, err := bundleOf(tmpl)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) || he.code != http.StatusBadRequest {
			t.Fatalf("bundleOf: %v is not a 400", err)
		}
		return
	}
	vars, files := rawVars(tmpl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = load(ctx, spec.Limits{MaxValues: 10000, MaxStringBytes: 1 << 20}, "fuzz", sb, vars, files, nil)
	if err != nil {
		var de *diagError
		if !errors.As(err, &de) || len(de.diags) == 0 {
			t.Fatalf("load: %v is not a template diagnostic", err)
		}
	}
}
