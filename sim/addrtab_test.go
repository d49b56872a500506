package sim

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestAddrTab checks the open-addressing table against a map through
// random puts, gets and deletes over a small key space (long probe runs,
// many backward shifts).
func TestAddrTab(t *testing.T) {
	for _, keys := range []int{8, 100, 5000} {
		rng := rand.New(rand.NewPCG(uint64(keys), 1))
		var tab addrTab
		ref := map[addrKey]int32{}
		for i := 0; i < 200000; i++ {
			a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(keys) >> 8), byte(rng.IntN(keys))})
			if rng.IntN(4) == 0 {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 14: byte(rng.IntN(keys) >> 8), 15: byte(rng.IntN(keys))})
			}
			k := keyOfAddr(a)
			switch rng.IntN(3) {
			case 0:
				v := int32(rng.IntN(1000))
				tab.put(k, v)
				ref[k] = v
			case 1:
				tab.del(k)
				delete(ref, k)
			}
			want, ok := ref[k]
			if !ok {
				want = -1
			}
			if got := tab.get(k); got != want {
				t.Fatalf("keys %d, step %d: get %v = %d, want %d", keys, i, a, got, want)
			}
			if tab.len() != len(ref) {
				t.Fatalf("keys %d, step %d: len %d, want %d", keys, i, tab.len(), len(ref))
			}
		}
		for k, v := range ref {
			if got := tab.get(k); got != v {
				t.Fatalf("keys %d: final get = %d, want %d", keys, got, v)
			}
		}
	}
}
