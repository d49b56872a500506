package nft_test

import (
	"fmt"
	"testing"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/internal/polgen"
	"kwl.dev/kwl/lang"
)

// benchLower compiles src b.N times (lowering and ruleset text; package
// deploy/nftnl benchmarks the netlink objects) and reports the time per unit of input, whose ratios across
// sizes show whether compiling is linear; B/op over the units is the
// memory per unit.
func benchLower(b *testing.B, src []byte, units int, unit string) {
	pol, diags := lang.Load("bench.kwl", src)
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	b.ReportAllocs()
	for b.Loop() {
		rs, diags := nft.Lower(pol)
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		_, _ = rs.Render()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(units), "ns/"+unit)
}

// BenchmarkLower: 1k, 10k and 100k statements.
func BenchmarkLower(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		src := polgen.Statements(n)
		b.Run(fmt.Sprintf("stmts=%d", n), func(b *testing.B) { benchLower(b, src, n, "stmt") })
	}
}

// BenchmarkLowerSequence: one knock sequence of 10, 100 and 1000 ports.
func BenchmarkLowerSequence(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		src := polgen.Sequence(n)
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) { benchLower(b, src, n, "port") })
	}
}

// BenchmarkLowerSources: an allow from 1k, 10k and 100k sources.
func BenchmarkLowerSources(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		src := polgen.Sources(n)
		b.Run(fmt.Sprintf("sources=%d", n), func(b *testing.B) { benchLower(b, src, n, "source") })
	}
}
