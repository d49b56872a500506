package replay

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/internal/hashtab"
)

// This file holds the keys of the tables kwl sim updates for every
// packet (hashtab.Table, and itable for the blocked flows): a packet
// costs a hash of a few words and usually one cache line.

// addrKey is an address as two words and whether it is a 4-byte address
// (so that 1.2.3.4 and ::ffff:1.2.3.4 stay apart, as they are in the
// capture).
type addrKey struct {
	hi, lo uint64
	is4    bool
}

func keyOfAddr(a netip.Addr) addrKey {
	if a.Is4() {
		// The 16-byte form without going through its bytes.
		b := a.As4()
		return addrKey{0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:])), true}
	}
	b := a.As16()
	return addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), false}
}

// v4Key is an IPv4 address as a key.
type v4Key uint32

// Hash hashes k for hashtab.
func (k v4Key) Hash(seed uint64) uint64 {
	return hashtab.Mix((uint64(k) ^ seed) * 0x9e3779b97f4a7c15)
}

// v6Key is a 16-byte address as a key.
type v6Key struct{ hi, lo uint64 }

// Hash hashes k for hashtab.
func (k v6Key) Hash(seed uint64) uint64 {
	return hashtab.Mix(((k.hi^seed)*0x9e3779b97f4a7c15 ^ k.lo) * 0x9e3779b97f4a7c15)
}

// addrSet is a set of addresses: 4-byte ones in 8-byte slots, the rest
// in 24-byte ones, so that a set of many IPv4 sources stays small enough
// for the caches.
type addrSet struct {
	v4 hashtab.Table[v4Key, struct{}]
	v6 hashtab.Table[v6Key, struct{}]
}

func (s *addrSet) add(a netip.Addr) {
	if a.Is4() {
		b := a.As4()
		s.v4.Put(v4Key(binary.BigEndian.Uint32(b[:])))
		return
	}
	k := keyOfAddr(a)
	s.v6.Put(v6Key{k.hi, k.lo})
}

func (s *addrSet) len() int { return s.v4.Len() + s.v6.Len() }

// pairKey names the two endpoints of a flow in a canonical order (the
// lesser first), so that a packet and its reply find the same entry.
type pairKey struct {
	a, b   v6Key
	ports  uint32 // a's port << 16 | b's port
	proto  lang.Proto
	family uint8 // bit 0: a is a 4-byte address; bit 1: b is
}

// Hash hashes k for hashtab.
func (k pairKey) Hash(seed uint64) uint64 {
	h := (k.a.hi ^ seed) * 0x9e3779b97f4a7c15
	h = (h ^ k.a.lo) * 0x9e3779b97f4a7c15
	h = (h ^ k.b.hi) * 0x9e3779b97f4a7c15
	h ^= k.b.lo
	h ^= uint64(k.ports)<<32 | uint64(k.proto)<<8 | uint64(k.family)
	return hashtab.Mix(h * 0x9e3779b97f4a7c15)
}

// pairOf returns the pair key of a packet from src:sport to dst:dport
// and its direction in it: 0 when src is the pair's first endpoint.
func pairOf(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, proto lang.Proto) (pairKey, int) {
	s, d := keyOfAddr(src), keyOfAddr(dst)
	if endpointLess(d, dport, s, sport) {
		return pairKey{a: v6Key{d.hi, d.lo}, b: v6Key{s.hi, s.lo}, ports: uint32(dport)<<16 | uint32(sport),
			proto: proto, family: fam(d.is4) | fam(s.is4)<<1}, 1
	}
	return pairKey{a: v6Key{s.hi, s.lo}, b: v6Key{d.hi, d.lo}, ports: uint32(sport)<<16 | uint32(dport),
		proto: proto, family: fam(s.is4) | fam(d.is4)<<1}, 0
}

func fam(is4 bool) uint8 {
	if is4 {
		return 1
	}
	return 0
}

func endpointLess(a addrKey, ap uint16, b addrKey, bp uint16) bool {
	switch {
	case a.hi != b.hi:
		return a.hi < b.hi
	case a.lo != b.lo:
		return a.lo < b.lo
	case a.is4 != b.is4:
		return b.is4
	}
	return ap < bp
}

// itable is a hash table for large entries: the probed array holds only
// 8-byte slots (32 bits of the hash, which also give the slot's home, and
// the entry's index), and the entries live in a dense array with a free
// list. A lookup that misses, the common case, reads one cache line of a
// small array.
type itable[K hashtab.Key, V any] struct {
	slots   []uint64 // hash32<<32 | entry index+1; 0 marks an empty slot
	entries []ientry[K, V]
	free    []int32
	n       int
	seed    uint64
}

type ientry[K hashtab.Key, V any] struct {
	key  K
	val  V
	used bool
}

func (t *itable[K, V]) len() int { return t.n }

func (t *itable[K, V]) hash32(k K) uint32 { return hash32(k, t.seed) }

// hash32 is the hash of k in an itable of the given seed.
func hash32[K hashtab.Key](k K, seed uint64) uint32 { return uint32(k.Hash(seed) >> 32) }

// blockedSeed seeds the hash of the blocked flows' tables.
var blockedSeed = rand.Uint64()

// find returns the slot holding k, or -1.
func (t *itable[K, V]) find(k K, h uint32) int {
	mask := len(t.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return -1
		}
		if uint32(s>>32) == h && t.entries[uint32(s)-1].key == k {
			return i
		}
	}
}

// get returns a pointer to k's value, or nil. The pointer is valid until
// the next put.
func (t *itable[K, V]) get(k K) *V { return t.getH(k, t.hash32(k)) }

// getH is get with hash32(k) computed.
func (t *itable[K, V]) getH(k K, h uint32) *V {
	if t.n == 0 {
		return nil
	}
	i := t.find(k, h)
	if i < 0 {
		return nil
	}
	return &t.entries[uint32(t.slots[i])-1].val
}

// put returns a pointer to k's value, inserting a zero value when k is
// not there.
func (t *itable[K, V]) put(k K) *V { return t.putH(k, t.hash32(k)) }

// putH is put with hash32(k) computed.
func (t *itable[K, V]) putH(k K, h uint32) *V {
	if t.n > 0 {
		if i := t.find(k, h); i >= 0 {
			return &t.entries[uint32(t.slots[i])-1].val
		}
	}
	if (t.n+1)*2 > len(t.slots) {
		t.grow()
		h = t.hash32(k) // the first growth picks the seed
	}
	var ix int32
	if n := len(t.free); n > 0 {
		ix = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.entries = append(t.entries, ientry[K, V]{})
		ix = int32(len(t.entries) - 1)
	}
	e := &t.entries[ix]
	*e = ientry[K, V]{key: k, used: true}
	mask := len(t.slots) - 1
	i := int(h) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = uint64(h)<<32 | uint64(ix+1)
	t.n++
	return &e.val
}

// del removes k.
func (t *itable[K, V]) del(k K) { t.delH(k, t.hash32(k)) }

// delH is del with hash32(k) computed.
func (t *itable[K, V]) delH(k K, h uint32) {
	if t.n == 0 {
		return
	}
	if i := t.find(k, h); i >= 0 {
		t.delSlot(i)
	}
}

// delSlot frees slot i's entry and shifts back the slots after it in its
// probe run.
func (t *itable[K, V]) delSlot(i int) {
	ix := int32(uint32(t.slots[i]) - 1)
	t.entries[ix] = ientry[K, V]{}
	t.free = append(t.free, ix)
	t.n--
	mask := len(t.slots) - 1
	for j := i; ; {
		t.slots[i] = 0
		for {
			j = (j + 1) & mask
			s := t.slots[j]
			if s == 0 {
				return
			}
			home := int(uint32(s>>32)) & mask
			if (i <= j && i < home && home <= j) || (i > j && (i < home || home <= j)) {
				continue
			}
			t.slots[i] = s
			i = j
			break
		}
	}
}

// reset empties the table, keeping its memory.
func (t *itable[K, V]) reset() {
	clear(t.slots)
	clear(t.entries)
	t.entries, t.free = t.entries[:0], t.free[:0]
	t.n = 0
}

func (t *itable[K, V]) grow() {
	n := 2 * len(t.slots)
	if n < 16 {
		n = 16
		if t.n == 0 && t.seed == 0 {
			// A table given no seed picks one at its first growth.
			t.seed = rand.Uint64()
		}
	}
	t.slots = make([]uint64, n)
	mask := n - 1
	for ix := range t.entries {
		e := &t.entries[ix]
		if !e.used {
			continue
		}
		h := t.hash32(e.key)
		i := int(h) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = uint64(h)<<32 | uint64(ix+1)
	}
}
