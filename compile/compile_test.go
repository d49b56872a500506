package compile_test

import (
	"os"
	"path/filepath"
	"slices"
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

// TestLoad: a policy with errors is not lowered; one without is, and its
// diagnostics are the load's, then the lowering's less those a kwl:ignore
// comment silences.
func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     string
		lowered bool
		codes   []lang.Code
	}{
		{"load error", "knock 1600 opens shh for 60s\n", false, []lang.Code{"E01"}},
		{"warnings", "limit ssh 3/60s per source\n", true, []lang.Code{"L09", "L07"}},
		{"ignored", "limit ssh 3/60s per source # kwl:ignore L07 L09\n", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			lower := func(p *lang.Policy) (*nft.Ruleset, lang.Diagnostics) {
				calls++
				return nft.Lower(p)
			}
			p, rs, diags := compile.Load("p.kwl", []byte(tc.src), lower)
			if tc.lowered != (calls == 1) || tc.lowered != (p != nil) || tc.lowered != (rs != nil) {
				t.Errorf("lowered %d times, policy %v, ruleset %v; want lowered %v", calls, p != nil, rs != nil, tc.lowered)
			}
			var codes []lang.Code
			for _, d := range diags {
				codes = append(codes, d.Code)
			}
			if !slices.Equal(codes, tc.codes) {
				t.Errorf("codes %v, want %v", codes, tc.codes)
			}
		})
	}
}
