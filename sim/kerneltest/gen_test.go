//go:build linux

package kerneltest

import (
	"reflect"
	"testing"

	"kwl.dev/kwl/lang"
)

// TestGenerateReproducible: a seed names one scenario, on every run.
func TestGenerateReproducible(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		a, b := Generate(seed, 0), Generate(seed, 0)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: two different scenarios", seed)
		}
		c := Generate(seed, 1)
		if a.Policy != c.Policy || len(a.Packets) != len(c.Packets) {
			t.Fatalf("seed %d: a new attempt changed more than the times", seed)
		}
		for i := 1; i < len(a.Packets); i++ {
			if gap := a.Packets[i].At - a.Packets[i-1].At; gap < 120e6 {
				t.Fatalf("seed %d: packets %d and %d only %v apart", seed, i, i+1, gap)
			}
		}
	}
	if testing.Verbose() {
		for seed := uint64(1); seed <= 3; seed++ {
			sc := Generate(seed, 0)
			t.Logf("%s", sc.String())
		}
	}
}

// TestGeneratedPoliciesCheck: every random policy the suite uses is a
// valid kwl policy.
func TestGeneratedPoliciesCheck(t *testing.T) {
	for seed := uint64(1); seed <= 400; seed++ {
		sc := Generate(seed, 0)
		if _, diags := lang.Load(sc.Name+".kwl", []byte(sc.Policy)); diags.HasErrors() {
			t.Errorf("seed %d: %v\n%s", seed, diags, sc.Policy)
		}
	}
}
