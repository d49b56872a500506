package hashtab

import (
	"maps"
	"math/rand/v2"
	"testing"
)

// key is a two-word key, like an address.
type key struct{ hi, lo uint64 }

func (k key) Hash(seed uint64) uint64 { return Mix((k.hi^seed)*0x9e3779b97f4a7c15 ^ k.lo) }

// badKey hashes every key to one of four homes at the end of the 16
// slots of a small table: a probe run that wraps around, and backward
// shifts across the wrap.
type badKey uint32

func (k badKey) Hash(seed uint64) uint64 { return uint64(12 + k%4) }

// TestTable holds Table to a map through random puts, gets, deletes and
// clears over key spaces small and large.
func TestTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys int
	}{
		{"few keys", 8},
		{"some keys", 300},
		{"many keys", 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.keys), 1))
			var tab Table[key, int]
			ref := map[key]int{}
			for i := 0; i < 100000; i++ {
				k := key{uint64(rng.IntN(2)), uint64(rng.IntN(tc.keys))}
				switch r := rng.IntN(100); {
				case r < 45:
					v, added := tab.Put(k)
					if _, had := ref[k]; added == had {
						t.Fatalf("step %d: Put(%v) added %v, the map had it: %v", i, k, added, had)
					}
					*v = i
					ref[k] = i
				case r < 90:
					tab.Delete(k)
					delete(ref, k)
				case r == 99 && rng.IntN(20) == 0:
					tab.Clear()
					clear(ref)
				}
				want, ok := ref[k]
				if got := tab.Get(k); ok != (got != nil) || ok && *got != want {
					t.Fatalf("step %d: Get(%v) = %v, want %d (%v)", i, k, got, want, ok)
				}
				if tab.Len() != len(ref) {
					t.Fatalf("step %d: Len() = %d, want %d", i, tab.Len(), len(ref))
				}
			}
			got := map[key]int{}
			for k, v := range tab.All() {
				got[k] = *v
			}
			if !maps.Equal(got, ref) {
				t.Fatalf("All() yields %d entries, want %d", len(got), len(ref))
			}
		})
	}
}

// TestCollisions deletes from long probe runs that wrap around the end of
// the slots: every key left must still be found.
func TestCollisions(t *testing.T) {
	var tab Table[badKey, badKey]
	for k := badKey(0); k < 7; k++ {
		v, _ := tab.Put(k)
		*v = k
	}
	gone := map[badKey]bool{}
	for _, del := range []badKey{0, 5, 2, 6} {
		tab.Delete(del)
		gone[del] = true
		for k := badKey(0); k < 7; k++ {
			if v := tab.Get(k); gone[k] != (v == nil) || v != nil && *v != k {
				t.Fatalf("after Delete(%d): Get(%d) = %v", del, k, v)
			}
		}
	}
}

// BenchmarkTable is a working set of a hundred thousand keys with one
// key replaced per operation, the way the simulator's sets see sources
// come and go; the Go map is the reference.
func BenchmarkTable(b *testing.B) {
	const n = 100_000
	keys := make([]key, 4*n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = key{0, rng.Uint64()}
	}
	b.Run("hashtab", func(b *testing.B) {
		var tab Table[key, int32]
		for i := range n {
			tab.Put(keys[i])
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k, old := keys[(i+n)%len(keys)], keys[i%len(keys)]
			if tab.Get(k) == nil {
				v, _ := tab.Put(k)
				*v = int32(i)
			}
			tab.Delete(old)
			i++
		}
	})
	b.Run("map", func(b *testing.B) {
		m := map[key]int32{}
		for i := range n {
			m[keys[i]] = 0
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k, old := keys[(i+n)%len(keys)], keys[i%len(keys)]
			if _, ok := m[k]; !ok {
				m[k] = int32(i)
			}
			delete(m, old)
			i++
		}
	})
}
