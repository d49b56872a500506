//go:build linux

package kerneltest

import (
	"strings"
	"testing"
)

// TestCatalogKernel runs the catalog's scenarios on the kernel through
// kwl's lowering, on each backend, and checks the verdicts against what
// SPEC.md's semantics say (Scenario.Want). It needs no simulator: a
// failure here is a bug in the lowering (or in the expectation).
func TestCatalogKernel(t *testing.T) {
	needRoot(t)
	for _, sc := range Catalog() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			checkWant(t, sc)
		})
	}
}

// checkWant runs a scenario on the kernel on each of its backends and
// checks the verdicts against its expectation (Scenario.Expect).
func checkWant(t *testing.T, sc Scenario) {
	t.Helper()
	sc.Packets = Resolve(sc.Packets)
	tgs, err := targets(&sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range tgs {
		want := sc.Expect(tg.Backend)
		if want == "" {
			continue
		}
		t.Run(tg.Backend, func(t *testing.T) {
			t.Parallel()
			if len(want) != len(sc.Packets) {
				t.Fatalf("expectation has %d letters for %d packets", len(want), len(sc.Packets))
			}
			var labs []string
			out, _, err := runOnce(tg, sc.Packets, &labs)
			checkGone(t, labs...)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range selfCheck(out) {
				t.Errorf("harness self-check: %s", s)
			}
			var got strings.Builder
			bad := false
			for i, o := range out {
				c := "adr"[kernelVerdict(o)]
				got.WriteByte(c)
				if want[i] != '?' && want[i] != c {
					bad = true
				}
			}
			if bad {
				t.Errorf("kernel verdicts differ from the semantics\n got %s\nwant %s\n%s", got.String(), want, sc.Repro(tg.Backend, out))
			}
		})
	}
}
