package compile_test

import (
	"fmt"
	"testing"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/internal/polgen"
	"kwl.dev/kwl/lang"
)

// benchLower compiles src b.N times on each backend (lowering and the
// ruleset text; package deploy/nftnl benchmarks the netlink objects) and
// reports the time per unit of input, whose ratios across sizes show
// whether compiling is linear; B/op over the units is the memory per
// unit.
func benchLower(b *testing.B, name string, gen func(int) []byte, sizes []int, unit string) {
	for _, be := range compile.Backends() {
		for _, n := range sizes {
			pol, diags := lang.Load("bench.kwl", gen(n))
			if diags.HasErrors() {
				b.Fatal(diags)
			}
			b.Run(fmt.Sprintf("%s/%s=%d", be.Name(), name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					rs, diags := be.Lower(pol)
					if diags.HasErrors() {
						b.Fatal(diags)
					}
					if _, err := be.Render(rs); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/"+unit)
			})
		}
	}
}

// BenchmarkLower: 1k, 10k and 100k statements.
func BenchmarkLower(b *testing.B) {
	benchLower(b, "stmts", polgen.Statements, []int{1000, 10000, 100000}, "stmt")
}

// BenchmarkLowerSequence: one knock sequence of 10, 100 and 1000 ports.
func BenchmarkLowerSequence(b *testing.B) {
	benchLower(b, "ports", polgen.Sequence, []int{10, 100, 1000}, "port")
}

// BenchmarkLowerSources: an allow from 1k, 10k and 100k sources.
func BenchmarkLowerSources(b *testing.B) {
	benchLower(b, "sources", polgen.Sources, []int{1000, 10000, 100000}, "source")
}
