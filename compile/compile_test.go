package compile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
)

// TestEveryWarningHasACode loads the examples and the policies of the
// testscripts, lowers them for both backends, and checks that every
// warning has a registered code, and every error a registered code or
// none (a syntax error).
func TestEveryWarningHasACode(t *testing.T) {
	srcs := map[string][]byte{}
	examples, _ := filepath.Glob("../examples/*.kwl")
	for _, f := range examples {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		srcs[f] = b
	}
	scripts, _ := filepath.Glob("../testdata/script/*.txtar")
	for _, f := range scripts {
		a, err := txtar.ParseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range a.Files {
			if strings.HasSuffix(file.Name, ".kwl") {
				srcs[f+"/"+file.Name] = file.Data
			}
		}
	}
	if len(srcs) < 10 {
		t.Fatalf("only %d policies found", len(srcs))
	}
	codes := map[lang.Code]bool{}
	for name, src := range srcs {
		pol, diags := lang.Load(name, src)
		if !diags.HasErrors() {
			_, n := nft.Lower(pol)
			_, i := iptables.Lower(pol)
			diags = append(append(append(diags, compile.Warnings(pol)...), n...), i...)
		}
		for _, d := range diags {
			codes[d.Code] = true
			if d.Code == "" && d.Severity == lang.Error {
				continue
			}
			if !d.Code.Known() {
				t.Errorf("%s: no registered code: %v", name, d)
			}
		}
	}
	t.Logf("%d policies, %d codes", len(srcs), len(codes))
}
