package sim

import (
	"math/rand/v2"
	"net/netip"
)

// flowIndex finds unreplied conntrack entries by tuple. It is an
// open-addressing table (linear probing, backward-shift deletion) of
// 8-byte slots: 32 bits of a hash, which also give the slot's home, and
// the entry's number. The hash is that of the unordered pair of endpoints,
// so that one slot finds a flow from both directions; a flow whose reply
// tuple is not its original one reversed (DNAT) has a second slot for it.
// The tuples themselves are in the entries, so a lookup that misses, the
// common case for the first packet of a flow, reads one cache line of a
// small array and no entry.
type flowIndex struct {
	slots []uint64 // hash32<<32 | (id<<1 | which)+1, which 1 for a DNAT flow's reply slot; 0 marks an empty slot
	n     int
	seed  uint64
}

func (x *flowIndex) endpoint(a netip.Addr, port uint16) uint64 {
	hi, lo := addrWords(a)
	h := (hi ^ x.seed) * 0x9e3779b97f4a7c15
	// The port goes where an IPv4 address leaves the word zero.
	h = (h ^ lo ^ uint64(port)<<48) * 0xbf58476d1ce4e5b9
	return h ^ h>>31
}

// hash is the hash of t's endpoints, in either order.
func (x *flowIndex) hash(t *tuple) uint32 {
	h := x.endpoint(t.src, t.sport) + x.endpoint(t.dst, t.dport)
	h ^= uint64(t.proto)
	h *= 0x94d049bb133111eb
	h ^= h >> 29
	return uint32(h >> 32)
}

func (x *flowIndex) clear() {
	clear(x.slots)
	x.n = 0
}

func (ct *conntrack) slotConn(v uint64) *conn { return ct.at(int((uint32(v) - 1) >> 1)) }

// indexGet returns the entry for t in the index, or nil: a live one if
// there is one, else an expired one.
func (ct *conntrack) indexGet(t *tuple, h uint32, j int64) *conn {
	x := &ct.ix
	if x.n == 0 {
		return nil
	}
	mask := len(x.slots) - 1
	var expired *conn
	for i := int(h) & mask; ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return expired
		}
		if uint32(v>>32) != h {
			continue
		}
		if c := ct.slotConn(v); c.orig == *t || c.reply() == *t {
			if j < c.expires {
				return c
			}
			if expired == nil {
				expired = c
			}
		}
	}
}

// indexAdd indexes a confirmed flow.
// h is the hash of c.orig when known (known set).
func (ct *conntrack) indexAdd(c *conn, h uint32, known bool) {
	ct.indexSlot(c, 0, h, known)
	if !c.replyReversed() {
		ct.indexSlot(c, 1, 0, false)
	}
}

func (ct *conntrack) indexSlot(c *conn, which uint32, h uint32, known bool) {
	x := &ct.ix
	if (x.n+1)*2 > len(x.slots) {
		if x.slots == nil {
			known = false // the first growth picks the seed
		}
		ct.growIndex()
	}
	t := &c.orig
	if which == 1 {
		r := c.reply()
		t = &r
	}
	if !known {
		h = x.hash(t)
	}
	if which == 0 {
		c.h = h
	}
	mask := len(x.slots) - 1
	i := int(h) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = uint64(h)<<32 | uint64(uint32(c.id)<<1|which) + 1
	x.n++
}

// indexRemove removes a flow's slots.
func (ct *conntrack) indexRemove(c *conn) {
	ct.indexDel(c, 0)
	if !c.replyReversed() {
		ct.indexDel(c, 1)
	}
}

func (ct *conntrack) indexDel(c *conn, which uint32) {
	x := &ct.ix
	if x.n == 0 {
		return
	}
	t := &c.orig
	if which == 1 {
		r := c.reply()
		t = &r
	}
	h := c.h
	if which == 1 {
		h = x.hash(t)
	}
	want := uint64(h)<<32 | uint64(uint32(c.id)<<1|which) + 1
	mask := len(x.slots) - 1
	i := int(h) & mask
	for ; x.slots[i] != want; i = (i + 1) & mask {
		if x.slots[i] == 0 {
			return
		}
	}
	x.n--
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
		i := int(uint32(v>>32)) & mask
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = v
	}
}
