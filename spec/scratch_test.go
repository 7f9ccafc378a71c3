package spec

import (
	"encoding/json"
	"os"
	"testing"
)

func TestScratch(t *testing.T) {
	b := Bundle{}
	for _, n := range []string{"main.hcl", "cloud-init.yaml"} {
		src, _ := os.ReadFile("testdata/valid/design/" + n)
		b[n] = src
	}
	st, diags := Load(b, Options{Stack: "demo", Dir: "testdata/valid/design"})
	for _, d := range diags {
		t.Log(DiagnosticString(d))
	}
	if st != nil {
		js, _ := json.MarshalIndent(st, "", " ")
		t.Log(string(js))
	}
}
