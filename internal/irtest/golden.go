package irtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kwl.dev/kwl/lang"
)

// Examples returns the files of the shipped examples that a backend
// compiles, in the directory examples: every examples/*.kwl, and for a
// backend NAME, examples/NAME/*.kwl too, which show what only it can do
// (nft's secret knocks).
func Examples(t testing.TB, examples, backend string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(examples, "*.kwl"))
	own, _ := filepath.Glob(filepath.Join(examples, backend, "*.kwl"))
	if len(files) == 0 {
		t.Fatalf("no examples in %s", examples)
	}
	return append(files, own...)
}

// Goldens returns the policies a backend's golden files are made of,
// by name: each example of the directory examples that the backend
// compiles (Examples; NAME.kwl, loaded), and each of Policies as
// "ir_NAME".
func Goldens(t testing.TB, examples, backend string) map[string]*lang.Policy {
	t.Helper()
	out := map[string]*lang.Policy{}
	for _, f := range Examples(t, examples, backend) {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, diags := lang.Load(filepath.Base(f), src)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".kwl")] = p
	}
	for name, p := range Policies() {
		out["ir_"+name] = p
	}
	return out
}

// Golden compares got with the golden file path, or, when update is set
// (the tests' -update flag), writes got to it.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the rendering; run go test -update and review the diff", path)
	}
}
