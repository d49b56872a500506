package sim

import (
	"encoding/binary"
	"net/netip"

	"kwl.dev/kwl/sim/internal/hashtab"
)

// addrKey is an address as two words. Addresses are unmapped before they
// become keys, so an IPv4 address (::ffff:a.b.c.d in As16) never meets an
// IPv6 one with the same bytes.
type addrKey struct{ hi, lo uint64 }

func keyOfAddr(a netip.Addr) addrKey {
	hi, lo := addrWords(a)
	return addrKey{hi, lo}
}

// Hash hashes k for hashtab.
func (k addrKey) Hash(seed uint64) uint64 {
	return hashtab.Mix((k.hi^seed)*0x9e3779b97f4a7c15 ^ k.lo)
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

// addrIndex maps addresses to int32 values: the indexes of set elements
// and recent entries.
type addrIndex struct {
	hashtab.Table[addrKey, int32]
}

// get returns the value stored for k, or -1.
func (x *addrIndex) get(k addrKey) int32 {
	if v := x.Get(k); v != nil {
		return *v
	}
	return -1
}

// put stores v for k.
func (x *addrIndex) put(k addrKey, v int32) {
	p, _ := x.Put(k)
	*p = v
}
