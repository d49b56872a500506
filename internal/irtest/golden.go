package irtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kwl.dev/kwl/lang"
)

// Goldens returns the policies the backends' golden files are made of,
// by name: each example of the directory examples (NAME.kwl, loaded),
// and each of Policies as "ir_NAME".
func Goldens(t testing.TB, examples string) map[string]*lang.Policy {
	t.Helper()
	out := map[string]*lang.Policy{}
	files, _ := filepath.Glob(filepath.Join(examples, "*.kwl"))
	for _, f := range files {
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
