package sim

import (
	"os"
	"path/filepath"
	"testing"

	"kwl.dev/kwl/lang"
)

// TestExamples runs the test blocks of every shipped example on both
// backends, as `kwl test examples/*.kwl` does.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.kwl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pol, diags := lang.Load(f, src)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		for _, b := range Backends {
			for _, tt := range pol.Tests {
				t.Run(filepath.Base(f)+"/"+b+"/"+tt.Name, func(t *testing.T) {
					r := RunTest(pol, tt, b)
					if r.Err != nil {
						t.Fatal(r.Err)
					}
					for _, sr := range r.Failures() {
						t.Error(sr.Message())
					}
				})
			}
		}
	}
}
