package replay

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestITable checks the blocked flows' table against a map through
// random puts, gets, deletes and resets over small key spaces (long probe
// runs, many backward shifts).
func TestITable(t *testing.T) {
	for _, keys := range []int{8, 300, 5000} {
		rng := rand.New(rand.NewPCG(uint64(keys), 2))
		var it itable[pairKey, int]
		refIt := map[pairKey]int{}
		for i := 0; i < 30000; i++ {
			a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(keys) >> 8), byte(rng.IntN(keys))})
			pk, _ := pairOf(a, uint16(rng.IntN(4)), netip.MustParseAddr("192.0.2.1"), 22, 6)
			switch rng.IntN(4) {
			case 0:
				*it.put(pk) = i
				refIt[pk] = i
			case 1:
				it.del(pk)
				delete(refIt, pk)
			case 2:
				if rng.IntN(100) == 0 {
					it.reset()
					clear(refIt)
				}
			}
			if it.len() != len(refIt) {
				t.Fatalf("keys %d, step %d: len %d, want %d", keys, i, it.len(), len(refIt))
			}
			if v, ok := refIt[pk]; ok {
				if got := it.get(pk); got == nil || *got != v {
					t.Fatalf("keys %d, step %d: itable get = %v, want %d", keys, i, got, v)
				}
			} else if it.get(pk) != nil {
				t.Fatalf("keys %d, step %d: itable has a deleted key", keys, i)
			}
		}
		for k, v := range refIt {
			if got := it.get(k); got == nil || *got != v {
				t.Fatalf("keys %d: final itable get = %v, want %d", keys, got, v)
			}
		}
	}
}
