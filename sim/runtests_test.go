package sim

import (
	"testing"

	"kwl.dev/kwl/lang"
)

// TestRunTests: every test on every backend, in the order of the tests
// and, within a test, of the backends.
func TestRunTests(t *testing.T) {
	src := `knock 1600 opens ssh for 60s
test "knock" {
    at 0s from 198.51.100.10 tcp/1600 expect drop
    at 1s from 198.51.100.10 tcp/22 expect accept
}
test "no knock" {
    at 0s from 198.51.100.11 tcp/22 expect drop
}
`
	p, diags := lang.Load("p.kwl", []byte(src))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	rs := RunTests(p, []string{"iptables", "nft"})
	want := []struct{ test, backend string }{{"knock", "iptables"}, {"knock", "nft"}, {"no knock", "iptables"}, {"no knock", "nft"}}
	if len(rs) != len(want) {
		t.Fatalf("%d results, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if r.Test.Name != want[i].test || r.Backend != want[i].backend || !r.Passed() {
			t.Errorf("result %d: %q on %s (passed %v), want %q on %s, passed", i, r.Test.Name, r.Backend, r.Passed(), want[i].test, want[i].backend)
		}
	}
}
