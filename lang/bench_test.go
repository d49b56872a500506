package lang_test

import (
	"fmt"
	"testing"

	"kwl.dev/kwl/internal/polgen"
	"kwl.dev/kwl/lang"
)

// benchLoad loads src b.N times and reports the time and the bytes
// allocated per unit of input (a statement, a port of a sequence), whose
// ratios across sizes show whether Load is linear.
func benchLoad(b *testing.B, src []byte, units int, unit string) {
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, diags := lang.Load("bench.kwl", src); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
	b.StopTimer()
	reportPer(b, units, unit)
}

// reportPer adds ns and allocated bytes per unit to the benchmark's line.
func reportPer(b *testing.B, units int, unit string) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(units), "ns/"+unit)
}

// BenchmarkLoad: check over 1k, 10k and 100k statements.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		src := polgen.Statements(n)
		b.Run(fmt.Sprintf("stmts=%d", n), func(b *testing.B) { benchLoad(b, src, n, "stmt") })
	}
}

// BenchmarkLoadSequence: check of one knock sequence of 10, 100 and 1000
// ports, with a test of as many steps.
func BenchmarkLoadSequence(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		src := polgen.Sequence(n)
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) { benchLoad(b, src, n, "port") })
	}
}

// BenchmarkLoadSources: check of an allow from 1k, 10k and 100k sources.
func BenchmarkLoadSources(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		src := polgen.Sources(n)
		b.Run(fmt.Sprintf("sources=%d", n), func(b *testing.B) { benchLoad(b, src, n, "source") })
	}
}

// BenchmarkLoadNewlines: check of 4 MB of empty lines.
func BenchmarkLoadNewlines(b *testing.B) {
	src := make([]byte, 4<<20)
	for i := range src {
		src[i] = '\n'
	}
	b.Run("4MB", func(b *testing.B) { benchLoad(b, src, len(src), "byte") })
}
