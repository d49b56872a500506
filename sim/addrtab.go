package sim

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
)

// addrKey is an address as two words. Addresses are unmapped before they
// become keys, so an IPv4 address (::ffff:a.b.c.d in As16) never meets an
// IPv6 one with the same bytes.
type addrKey struct{ hi, lo uint64 }

func keyOfAddr(a netip.Addr) addrKey {
	hi, lo := addrWords(a)
	return addrKey{hi, lo}
}

// addrWords returns the 16-byte form of a as two big-endian words, the
// way As16 gives it, without going through the bytes for an IPv4
// address (a quarter of the time).
func addrWords(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// addrTab maps addresses to int32 values (indexes of set elements and
// recent entries). It is an open-addressing table with linear probing and
// backward-shift deletion: no tombstones, no pointers for the collector to
// scan, no allocation once it has reached its working size, and a lookup
// that usually reads one cache line. The seed is random per table so that
// a capture cannot be crafted to collide.
type addrTab struct {
	slots []addrSlot
	n     int
	seed  uint64
}

type addrSlot struct {
	key addrKey
	val int32 // value+1; 0 marks an empty slot
}

func (t *addrTab) hash(k addrKey) uint64 {
	h := (k.hi ^ t.seed) * 0x9e3779b97f4a7c15
	h ^= k.lo
	h ^= h >> 32
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return h
}

func (t *addrTab) len() int { return t.n }

func (t *addrTab) clear() {
	clear(t.slots)
	t.n = 0
}

// get returns the value stored for k, or -1.
func (t *addrTab) get(k addrKey) int32 {
	if t.n == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.hash(k) & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.val == 0 {
			return -1
		}
		if s.key == k {
			return s.val - 1
		}
	}
}

// put stores v (>= 0) for k.
func (t *addrTab) put(k addrKey, v int32) {
	if (t.n+1)*2 > len(t.slots) {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.hash(k) & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.val == 0 {
			s.key, s.val = k, v+1
			t.n++
			return
		}
		if s.key == k {
			s.val = v + 1
			return
		}
	}
}

// del removes k, shifting back the entries after it in its probe run.
func (t *addrTab) del(k addrKey) {
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := t.hash(k) & mask
	for {
		s := &t.slots[i]
		if s.val == 0 {
			return
		}
		if s.key == k {
			break
		}
		i = (i + 1) & mask
	}
	t.n--
	for j := i; ; {
		t.slots[i] = addrSlot{}
		for {
			j = (j + 1) & mask
			s := &t.slots[j]
			if s.val == 0 {
				return
			}
			home := t.hash(s.key) & mask
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

func (t *addrTab) grow() {
	old := t.slots
	n := 2 * len(old)
	if n < 16 {
		n = 16
		t.seed = rand.Uint64()
	}
	t.slots = make([]addrSlot, n)
	t.n = 0
	mask := uint64(n - 1)
	for _, s := range old {
		if s.val == 0 {
			continue
		}
		i := t.hash(s.key) & mask
		for t.slots[i].val != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
		t.n++
	}
}
