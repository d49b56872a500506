package replay

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestDistinctAddrs holds distinctAddrs to a map on random addresses from
// small and large ranges, both families, across many flushes.
func TestDistinctAddrs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, spread := range []int{10, 1000, 1 << 20, 1 << 31} {
		var d distinctAddrs
		want := map[netip.Addr]bool{}
		for i := 0; i < 3*distinctBatch+123; i++ {
			v := uint32(rng.IntN(spread))
			var a netip.Addr
			if rng.IntN(10) == 0 {
				a = netip.AddrFrom16([16]byte{0x20, 1, 15: byte(v), 14: byte(v >> 8)})
			} else {
				a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			}
			d.add(a)
			want[a] = true
			if i%50000 == 0 && d.len() != len(want) {
				t.Fatalf("spread %d, after %d: %d distinct, want %d", spread, i+1, d.len(), len(want))
			}
		}
		if d.len() != len(want) {
			t.Errorf("spread %d: %d distinct, want %d", spread, d.len(), len(want))
		}
	}
}
