package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// embeddedEnv is an Env for the embedded default with the in-memory driver
// in a fresh directory holding the quickstart template.
func embeddedEnv(t *testing.T) (*Env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "examples", "quickstart", "main.hcl"))
	if err != nil {
		matches, _ := filepath.Glob(filepath.Join("..", "examples", "quickstart", "*.hcl"))
		if len(matches) == 0 {
			t.Fatal(err)
		}
		src, err = os.ReadFile(matches[0])
		if err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "quickstart"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "quickstart", "main.hcl"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	return &Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: dir,
		Environ: []string{envEmbeddedDriver + "=memory"},
	}, &out, &errb
}

func run(t *testing.T, e *Env, out, errb *bytes.Buffer, args ...string) int {
	t.Helper()
	out.Reset()
	errb.Reset()
	return e.Run(append([]string{"kiln"}, args...))
}

func TestEmbeddedApplyStatusOutputDestroy(t *testing.T) {
	e, out, errb := embeddedEnv(t)

	if code := run(t, e, out, errb, "apply", "quickstart"); code != ExitError || !strings.Contains(errb.String(), "-auto-approve") {
		t.Fatalf("apply without a terminal: code %d, stderr %q", code, errb.String())
	}

	if code := run(t, e, out, errb, "apply", "quickstart", "-auto-approve", "-json"); code != ExitOK {
		t.Fatalf("apply: code %d\n%s%s", code, out, errb)
	}
	var doc opJSON
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("apply -json: %v\n%s", err, out)
	}
	if !opSucceeded(doc.Status) || len(doc.Actions) != 3 || doc.Outputs["address"].Value != "10.42.0.10" {
		t.Fatalf("apply -json document: %+v", doc)
	}

	if code := run(t, e, out, errb, "status", "quickstart", "-json"); code != ExitOK {
		t.Fatalf("status: %d %s", code, errb)
	}
	var st struct {
		Status    string `json:"status"`
		Resources []struct {
			Address string `json:"address"`
			Status  string `json:"status"`
		} `json:"resource_list"`
	}
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Status != "COMPLETE" || len(st.Resources) != 3 {
		t.Fatalf("status -json: %v %s", err, out)
	}

	if code := run(t, e, out, errb, "output", "quickstart", "address"); code != ExitOK || strings.TrimSpace(out.String()) != "10.42.0.10" {
		t.Fatalf("output: %d %q %s", code, out, errb)
	}
	if code := run(t, e, out, errb, "output", "quickstart", "-json"); code != ExitOK || !strings.Contains(out.String(), `"address": "10.42.0.10"`) {
		t.Fatalf("output -json: %d %q", code, out)
	}

	// A second apply has nothing to do.
	if code := run(t, e, out, errb, "apply", "quickstart", "-auto-approve"); code != ExitOK || !strings.Contains(out.String(), "No changes") {
		t.Fatalf("second apply: %d\n%s%s", code, out, errb)
	}

	if code := run(t, e, out, errb, "events", "quickstart", "-json"); code != ExitOK {
		t.Fatalf("events: %d %s", code, errb)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev["message"] == nil {
			t.Fatalf("events -json line %q: %v", l, err)
		}
	}

	if code := run(t, e, out, errb, "stacks", "-json"); code != ExitOK || !strings.Contains(out.String(), `"name": "quickstart"`) {
		t.Fatalf("stacks: %d %s %s", code, out, errb)
	}

	if code := run(t, e, out, errb, "destroy", "quickstart", "-auto-approve", "-json"); code != ExitOK {
		t.Fatalf("destroy: %d\n%s%s", code, out, errb)
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || !opSucceeded(doc.Status) || doc.Kind != "destroy" {
		t.Fatalf("destroy -json: %v %s", err, out)
	}
}

func TestEmbeddedLockedBySecondUser(t *testing.T) {
	e, out, errb := embeddedEnv(t)
	var sf serverFlags
	r := e.connect("status", &sf)
	if r == nil {
		t.Fatalf("first connect: %s", errb)
	}
	defer r.close()
	if code := run(t, e, out, errb, "stacks"); code != ExitError || !strings.Contains(errb.String(), "another kiln is using ./.kiln (pid ") {
		t.Fatalf("second user: code %d, stderr %q", code, errb.String())
	}
}
