package replay

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestTables checks the open-addressing tables against maps through
// random puts, gets, deletes and resets over small key spaces (long probe
// runs, many backward shifts).
func TestTables(t *testing.T) {
	for _, keys := range []int{8, 300, 5000} {
		rng := rand.New(rand.NewPCG(uint64(keys), 2))
		var set table[v4Key, int]
		var it itable[pairKey, int]
		refSet, refIt := map[v4Key]int{}, map[pairKey]int{}
		for i := 0; i < 30000; i++ {
			a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(keys) >> 8), byte(rng.IntN(keys))})
			k4 := v4Key(a.As4()[2])<<8 | v4Key(a.As4()[3])
			pk, _ := pairOf(a, uint16(rng.IntN(4)), netip.MustParseAddr("192.0.2.1"), 22, 6)
			switch rng.IntN(4) {
			case 0:
				v, _ := set.put(k4)
				*v = i
				refSet[k4] = i
				*it.put(pk) = i
				refIt[pk] = i
			case 1:
				set.del(k4)
				delete(refSet, k4)
				it.del(pk)
				delete(refIt, pk)
			case 2:
				if rng.IntN(100) == 0 {
					it.reset()
					clear(refIt)
				}
			}
			if set.len() != len(refSet) || it.len() != len(refIt) {
				t.Fatalf("keys %d, step %d: len %d/%d, want %d/%d", keys, i, set.len(), it.len(), len(refSet), len(refIt))
			}
			for k, v := range refSet {
				if got := set.get(k); got == nil || *got != v {
					t.Fatalf("keys %d, step %d: table get %v = %v, want %d", keys, i, k, got, v)
				}
				break
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
		for k, v := range refSet {
			if got := set.get(k); got == nil || *got != v {
				t.Fatalf("keys %d: final table get = %v, want %d", keys, got, v)
			}
		}
	}
}
