package sim

import (
	"encoding/binary"
	"math/rand/v2"
)

// flowIndex finds conntrack entries by tuple. It is an open-addressing
// table (linear probing, backward-shift deletion) of 8-byte slots: 32 bits
// of the tuple's hash, which also give the slot's home, and the entry's
// number with the direction. The tuples themselves are in the entries, so
// a lookup that misses, the common case for the first packet of a flow,
// reads one cache line of a small array and no entry.
type flowIndex struct {
	slots []uint64 // hash32<<32 | (id<<1 | dir) + 1; 0 marks an empty slot
	n     int
	seed  uint64
}

func (x *flowIndex) hash(t *tuple) uint32 {
	s, d := t.src.As16(), t.dst.As16()
	h := (binary.LittleEndian.Uint64(s[:8]) ^ x.seed) * 0x9e3779b97f4a7c15
	h = (h ^ binary.LittleEndian.Uint64(s[8:])) * 0x9e3779b97f4a7c15
	h = (h ^ binary.LittleEndian.Uint64(d[:8])) * 0x9e3779b97f4a7c15
	h ^= binary.LittleEndian.Uint64(d[8:])
	h ^= uint64(t.sport)<<32 | uint64(t.dport)<<16 | uint64(t.proto)
	h *= 0x9e3779b97f4a7c15
	h ^= h >> 32
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return uint32(h >> 32)
}

func (x *flowIndex) clear() {
	clear(x.slots)
	x.n = 0
}

// tupleOf returns the tuple a slot value names.
func (ct *conntrack) tupleOf(v uint64) (*conn, *tuple) {
	ref := uint32(v) - 1
	c := ct.at(int(ref >> 1))
	if ref&1 == 0 {
		return c, &c.orig
	}
	return c, &c.reply
}

// find returns the slot holding t, or -1.
func (ct *conntrack) findSlot(t *tuple, h uint32) int {
	x := &ct.ix
	if x.n == 0 {
		return -1
	}
	mask := len(x.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return -1
		}
		if uint32(v>>32) == h {
			if _, tt := ct.tupleOf(v); *tt == *t {
				return i
			}
		}
	}
}

// indexGet returns the entry the index holds for t, or nil.
func (ct *conntrack) indexGet(t *tuple) *conn {
	if ct.ix.n == 0 {
		return nil
	}
	i := ct.findSlot(t, ct.ix.hash(t))
	if i < 0 {
		return nil
	}
	c, _ := ct.tupleOf(ct.ix.slots[i])
	return c
}

// indexPut points t (c's tuple in direction dir) at c, and returns the
// entry it pointed at before, if another.
func (ct *conntrack) indexPut(t *tuple, c *conn, dir direction) *conn {
	x := &ct.ix
	if (x.n+1)*2 > len(x.slots) {
		ct.growIndex()
	}
	h := x.hash(t)
	v := uint64(h)<<32 | uint64(uint32(c.id)<<1|uint32(dir)) + 1
	if i := ct.findSlot(t, h); i >= 0 {
		old, _ := ct.tupleOf(x.slots[i])
		x.slots[i] = v
		if old == c {
			return nil
		}
		return old
	}
	mask := len(x.slots) - 1
	i := int(h) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = v
	x.n++
	return nil
}

// indexDel removes t.
func (ct *conntrack) indexDel(t *tuple) {
	x := &ct.ix
	if x.n == 0 {
		return
	}
	i := ct.findSlot(t, x.hash(t))
	if i < 0 {
		return
	}
	x.n--
	mask := len(x.slots) - 1
	for j := i; ; {
		x.slots[i] = 0
		for {
			j = (j + 1) & mask
			v := x.slots[j]
			if v == 0 {
				return
			}
			home := int(uint32(v>>32)) & mask
			// v may stay where it is when its home lies cyclically in (i, j].
			if (i <= j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
				continue
			}
			x.slots[i] = v
			i = j
			break
		}
	}
}

func (ct *conntrack) growIndex() {
	x := &ct.ix
	old := x.slots
	n := 2 * len(old)
	if n < 64 {
		n = 64
		if x.n == 0 {
			x.seed = rand.Uint64()
		}
	}
	x.slots = make([]uint64, n)
	mask := n - 1
	for _, v := range old {
		if v == 0 {
			continue
		}
		_, t := ct.tupleOf(v)
		h := x.hash(t)
		i := int(h) & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = uint64(h)<<32 | uint64(uint32(v))
	}
}
