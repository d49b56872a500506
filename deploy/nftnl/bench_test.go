//go:build linux

package nftnl_test

import (
	"fmt"
	"testing"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy/nftnl"
	"kwl.dev/kwl/internal/polgen"
	"kwl.dev/kwl/lang"
)

// lower loads and lowers src, failing on errors.
func lower(tb testing.TB, src []byte) *nft.Ruleset {
	tb.Helper()
	pol, diags := lang.Load("bench.kwl", src)
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	rs, diags := nft.Lower(pol)
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	return rs
}

// TestBoundedRulesetConverts: the ruleset of compile/nft's
// TestRulesStayBounded (a sequence of 1000 ports, 41 doors of one
// service, a close of them all) converts to netlink.
func TestBoundedRulesetConverts(t *testing.T) {
	if _, err := nftnl.Convert(lower(t, polgen.Bounded())); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkConvert converts the ruleset of 1k, 10k and 100k statements
// and reports the time per statement.
func BenchmarkConvert(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		rs := lower(b, polgen.Statements(n))
		b.Run(fmt.Sprintf("stmts=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := nftnl.Convert(rs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/stmt")
		})
	}
}
