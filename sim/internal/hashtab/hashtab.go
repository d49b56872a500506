// Package hashtab holds the hash table the simulator and the replay keep
// their per-packet state in: open addressing with linear probing and
// backward-shift deletion, over keys without pointers.
//
// Compared with a Go map it has no tombstones, gives the collector
// nothing to scan when K and V hold no pointers, does not allocate once
// it has reached its working size, and a lookup usually reads one cache
// line. The seed of the hash is random per table, so that a capture
// cannot be crafted to make its keys collide.
package hashtab

import (
	"iter"
	"math/rand/v2"
)

// A Key is a key of a Table: comparable, and hashed by its own method
// with the table's seed. The table takes the home of a key from the low
// bits of its hash.
type Key interface {
	comparable
	Hash(seed uint64) uint64
}

// Mix finishes a hash of a few multiplied words (the finalizer of
// splitmix64), so that its low bits depend on all of its input.
func Mix(h uint64) uint64 {
	h ^= h >> 32
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return h
}

// A Table maps keys to values. The zero Table is empty and ready to use.
// It is not safe for concurrent use.
type Table[K Key, V any] struct {
	slots []slot[K, V]
	n     int
	seed  uint64
}

type slot[K Key, V any] struct {
	key  K
	val  V
	used bool
}

// Len returns the number of keys in t.
func (t *Table[K, V]) Len() int { return t.n }

// Get returns a pointer to k's value, or nil when k is not in t. The
// pointer is valid until the next Put or Delete.
func (t *Table[K, V]) Get(k K) *V {
	if t.n == 0 {
		return nil
	}
	mask := len(t.slots) - 1
	for i := int(k.Hash(t.seed)) & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if !s.used {
			return nil
		}
		if s.key == k {
			return &s.val
		}
	}
}

// Put returns a pointer to k's value, inserting k with the zero value
// when it is not in t (added is then true). The pointer is valid until
// the next Put or Delete.
func (t *Table[K, V]) Put(k K) (v *V, added bool) {
	if (t.n+1)*2 > len(t.slots) {
		t.grow()
	}
	mask := len(t.slots) - 1
	for i := int(k.Hash(t.seed)) & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if !s.used {
			*s = slot[K, V]{key: k, used: true}
			t.n++
			return &s.val, true
		}
		if s.key == k {
			return &s.val, false
		}
	}
}

// Delete removes k from t, if it is there.
func (t *Table[K, V]) Delete(k K) {
	if t.n == 0 {
		return
	}
	mask := len(t.slots) - 1
	i := int(k.Hash(t.seed)) & mask
	for {
		s := &t.slots[i]
		if !s.used {
			return
		}
		if s.key == k {
			break
		}
		i = (i + 1) & mask
	}
	t.n--
	// Shift back the entries after i in its probe run, so that no
	// lookup meets a hole before its key.
	for j := i; ; {
		t.slots[i] = slot[K, V]{}
		for {
			j = (j + 1) & mask
			s := &t.slots[j]
			if !s.used {
				return
			}
			home := int(s.key.Hash(t.seed)) & mask
			// s may stay where it is when its home lies cyclically in (i, j].
			if (i <= j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
				continue
			}
			t.slots[i] = *s
			i = j
			break
		}
	}
}

// Touch reads the slot where a lookup of k begins, changing nothing, and
// reports whether it is in use. A caller with a batch of keys ahead
// touches them all before looking them up, so that their cache misses
// overlap instead of following one another.
func (t *Table[K, V]) Touch(k K) bool {
	if t.n == 0 {
		return false
	}
	return t.slots[int(k.Hash(t.seed))&(len(t.slots)-1)].used
}

// Clear removes every key, keeping the memory.
func (t *Table[K, V]) Clear() {
	clear(t.slots)
	t.n = 0
}

// All yields every key with a pointer to its value, in no particular
// order. The loop must not Put or Delete.
func (t *Table[K, V]) All() iter.Seq2[K, *V] {
	return func(yield func(K, *V) bool) {
		for i := range t.slots {
			if s := &t.slots[i]; s.used && !yield(s.key, &s.val) {
				return
			}
		}
	}
}

func (t *Table[K, V]) grow() {
	old := t.slots
	n := 2 * len(old)
	if n < 16 {
		n = 16
		t.seed = rand.Uint64()
	}
	t.slots = make([]slot[K, V], n)
	mask := n - 1
	for _, s := range old {
		if !s.used {
			continue
		}
		i := int(s.key.Hash(t.seed)) & mask
		for t.slots[i].used {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}
