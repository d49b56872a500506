package audit

import (
	"os"
	"path/filepath"
	"testing"

	"kwl.dev/kwl/lang"
)

// BenchmarkAuditExamples audits every shipped example on both backends,
// with every attack, as kwl audit examples/*.kwl does (1,000 scanners
// per random order).
func BenchmarkAuditExamples(b *testing.B) {
	files, _ := filepath.Glob("../examples/*.kwl")
	var pols []*lang.Policy
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		p, diags := lang.Load(f, src)
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		pols = append(pols, p)
	}
	for b.Loop() {
		for _, p := range pols {
			for _, be := range []string{"nft", "iptables"} {
				if _, err := Run(p, Options{Backend: be, Seed: 1}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
