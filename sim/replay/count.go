package replay

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"kwl.dev/kwl/sim/capture"
)

// distinctAddrs counts distinct addresses without a random memory access
// per address: IPv4 addresses go to a buffer, which, when full, is sorted
// (radix, 4 passes over the buffer) and merged into the sorted list of
// those seen before, so that each address costs a few sequential reads
// and writes. The list holds each address once, so memory follows the
// number of distinct addresses, not of additions. IPv6 addresses, the
// fewer in most captures, go to a hash set.
type distinctAddrs struct {
	buf    []uint32 // IPv4 addresses not yet merged
	sorted []uint32 // distinct IPv4 addresses merged so far, ascending
	tmp    []uint32 // the sort's and the merge's second buffer
	v6     addrSet
	sink   uint64 // what prefetch reads
}

// distinctBatch is how many IPv4 addresses wait in the buffer, at least:
// when more are distinct, the buffer grows as long as the sorted list,
// so that a merge costs a constant per address added.
const distinctBatch = 1 << 16

func (d *distinctAddrs) add(a netip.Addr) {
	if !a.Is4() {
		d.v6.add(a)
		return
	}
	b := a.As4()
	d.buf = append(d.buf, binary.BigEndian.Uint32(b[:]))
	if len(d.buf) >= distinctBatch && len(d.buf) >= len(d.sorted) {
		d.flush()
	}
}

// flush sorts the buffer and merges it into the sorted list.
func (d *distinctAddrs) flush() {
	if len(d.buf) == 0 {
		return
	}
	d.tmp = slices.Grow(d.tmp[:0], len(d.buf))[:len(d.buf)]
	radixSort(d.buf, d.tmp)
	// Merge the sorted buffer into the list, keeping one of each.
	out := slices.Grow(d.tmp[:0], len(d.sorted)+len(d.buf))
	i, j := 0, 0
	for i < len(d.sorted) || j < len(d.buf) {
		var v uint32
		switch {
		case j == len(d.buf) || i < len(d.sorted) && d.sorted[i] <= d.buf[j]:
			v = d.sorted[i]
			i++
		default:
			v = d.buf[j]
			j++
		}
		if n := len(out); n == 0 || out[n-1] != v {
			out = append(out, v)
		}
	}
	d.sorted, d.tmp = out, d.sorted
	d.buf = d.buf[:0]
}

// radixSort sorts a, using tmp (as long as a) as scratch space.
func radixSort(a, tmp []uint32) {
	src, dst := a, tmp
	for shift := uint(0); shift < 32; shift += 8 {
		var count [257]int
		for _, v := range src {
			count[(v>>shift)&0xff+1]++
		}
		for k := 1; k < len(count); k++ {
			count[k] += count[k-1]
		}
		for _, v := range src {
			b := (v >> shift) & 0xff
			dst[count[b]] = v
			count[b]++
		}
		src, dst = dst, src
	}
	// Four passes: the result is back in a.
}

// prefetch reads the slots that the IPv6 sources of ps have in the hash
// set, so that their cache misses overlap before they are added.
func (d *distinctAddrs) prefetch(ps []capture.Packet) {
	v6 := &d.v6.v6
	if v6.Len() == 0 {
		return
	}
	for i := range ps {
		if a := ps[i].Src; a.Is6() && ps[i].Skipped == "" {
			k := keyOfAddr(a)
			if v6.Touch(v6Key{k.hi, k.lo}) {
				d.sink++
			}
		}
	}
}

// len returns the number of distinct addresses added.
func (d *distinctAddrs) len() int {
	d.flush()
	return len(d.sorted) + d.v6.len()
}
