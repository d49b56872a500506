package nft_test

import (
	"testing"
	"time"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/lang"
)

func TestWarnings(t *testing.T) {
	b := irtest.New("w.kwl")
	b.Door("ssh", 500*time.Millisecond, 2*time.Second, irtest.TCP(7000), irtest.TCP(8000))
	b.Limit("ssh", 3, time.Minute, 32, 128, time.Minute)
	b.Limit("https", 7, 13*time.Second, 0, 0, 0)
	_, own := nft.Lower(b.P)
	diags := compile.With(b.P, own)
	for _, d := range own {
		if d.Code == lang.LintScanKnock || d.Code == lang.LintIPv6Key || d.Code == lang.LintTiming {
			t.Errorf("Lower gives a warning of every backend, which compile.Warnings gives: %v", d)
		}
	}
	codes := map[string]int{}
	for _, d := range diags {
		if d.Severity == lang.Error || !d.Pos.IsValid() || (d.Severity == lang.Note) != (d.Code == lang.LintCapacity) {
			t.Errorf("not a positioned warning or note: %v", d)
		}
		codes[string(d.Code)]++
	}
	for code, n := range map[string]int{"L05": 1, "L10": 2, "L09": 1, "L13": 0, "L07": 1} {
		if codes[code] != n {
			t.Errorf("%s: %d warnings, want %d\n%v", code, codes[code], n, diags)
		}
	}
}
