package sim

import (
	"net/netip"

	"kwl.dev/kwl/compile/iptables"
)

// This file models the recent match, xt_recent (net/netfilter/xt_recent.c),
// as modern kernels run it:
//
//   - a list (recent_table) is per network namespace and per --name, shared
//     by iptables and ip6tables rules; it holds at most ip_list_tot (100)
//     entries, kept in LRU order;
//   - inserting into a full list evicts the LRU head, whatever its age
//     (recent_entry_init);
//   - an entry keeps a ring of jiffies stamps whose size is
//     roundup_pow_of_two(hitcount), or 32 when no rule gives a hitcount,
//     taken from the most demanding rule on the list (recent_mt_check);
//   - --mask is copied when the list is created, by its first rule;
//   - recent_mt: see match below. Entries never expire by time.

// recentListTot is ip_list_tot, the module's default list size.
const recentListTot = iptables.ListTot

type recentEntry struct {
	addr       netip.Addr
	index      int // next stamp slot, 1-based as the kernel's e->index
	nstamps    int
	prev, next int32 // LRU links; -1 ends
}

type recentTable struct {
	name     string
	mask     [16]byte
	ringMask int // nstamps_max_mask
	entries  []recentEntry
	stamps   []int64 // ringMask+1 per entry slot
	idx      addrIndex
	free     []int32
	head     int32 // least recently seen
	tail     int32
	count    int
}

func newRecentTable(name string) *recentTable {
	t := &recentTable{name: name, head: -1, tail: -1}
	for i := range t.mask {
		t.mask[i] = 0xff
	}
	return t
}

// setMask sets the list's mask as its first rule gives it (prefix bits of
// the rule's family; 0 means the whole address).
func (t *recentTable) setMask(bits int, v6 bool) {
	n := 4
	if v6 {
		n = 16
	}
	if bits <= 0 {
		return
	}
	for i := 0; i < n; i++ {
		switch {
		case bits >= 8:
			t.mask[i] = 0xff
			bits -= 8
		default:
			t.mask[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
}

// grow sizes the ring for a rule's hitcount (recent_mt_check).
func (t *recentTable) grow(hitcount int) {
	m := 31
	if hitcount > 0 {
		m = roundupPow2(hitcount) - 1
	}
	if m > t.ringMask {
		t.ringMask = m
	}
}

func roundupPow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

func (t *recentTable) reset() {
	t.idx.Clear()
	t.entries = t.entries[:0]
	t.stamps = t.stamps[:0]
	t.free = t.free[:0]
	t.head, t.tail, t.count = -1, -1, 0
}

func (t *recentTable) maskAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		b := a.As4()
		for i := range b {
			b[i] &= t.mask[i]
		}
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	for i := range b {
		b[i] &= t.mask[i]
	}
	return netip.AddrFrom16(b)
}

func (t *recentTable) ring(ix int32) []int64 {
	n := t.ringMask + 1
	return t.stamps[int(ix)*n : int(ix)*n+n]
}

func (t *recentTable) unlink(ix int32) {
	e := &t.entries[ix]
	if e.prev >= 0 {
		t.entries[e.prev].next = e.next
	} else {
		t.head = e.next
	}
	if e.next >= 0 {
		t.entries[e.next].prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (t *recentTable) pushTail(ix int32) {
	e := &t.entries[ix]
	e.prev, e.next = t.tail, -1
	if t.tail >= 0 {
		t.entries[t.tail].next = ix
	} else {
		t.head = ix
	}
	t.tail = ix
}

func (t *recentTable) remove(ix int32) {
	t.unlink(ix)
	t.idx.Delete(keyOfAddr(t.entries[ix].addr))
	t.free = append(t.free, ix)
	t.count--
}

// insert runs recent_entry_init: evict the LRU head when the list is
// full, then add the entry with one stamp, at the LRU tail.
func (t *recentTable) insert(s *Sim, addr netip.Addr, j int64) {
	if t.count >= recentListTot {
		h := t.head
		if s.opts.Explain {
			s.note("recent %s: evicted %s (list full, %d entries)", t.name, t.entries[h].addr, recentListTot)
		}
		t.remove(h)
	}
	var ix int32
	if n := len(t.free); n > 0 {
		ix = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.entries = append(t.entries, recentEntry{})
		for i := 0; i <= t.ringMask; i++ {
			t.stamps = append(t.stamps, 0)
		}
		ix = int32(len(t.entries) - 1)
	}
	t.entries[ix] = recentEntry{addr: addr, index: 1, nstamps: 1, prev: -1, next: -1}
	t.ring(ix)[0] = j
	t.idx.put(keyOfAddr(addr), ix)
	t.pushTail(ix)
	t.count++
}

// stamp runs recent_entry_update: a stamp in the ring (overwriting the
// oldest), and the entry moves to the LRU tail.
func (t *recentTable) stamp(ix int32, j int64) {
	e := &t.entries[ix]
	e.index &= t.ringMask
	t.ring(ix)[e.index] = j
	e.index++
	if e.index > e.nstamps {
		e.nstamps = e.index
	}
	t.unlink(ix)
	t.pushTail(ix)
}

// irecent is one rule's recent match.
type irecent struct {
	list     *recentTable
	op       iptables.RecentOp
	seconds  int64 // jiffies of --seconds
	secs     int
	hitcount int
	reap     bool
	invert   bool
}

// match is recent_mt (net/netfilter/xt_recent.c) on the source address:
//
//	no entry: without --set, return invert (no state change); with it,
//	  create the entry (evicting the LRU head of a full list): !invert.
//	--set: match; --remove: delete the entry, match;
//	--rcheck/--update: count stamps >= now - seconds*HZ (all of them
//	  without --seconds: the window is inclusive), match when there are
//	  hitcount of them (one without --hitcount); --reap then looks at the
//	  LRU head only.
//	the result is XORed with invert; --set, and --update when the result
//	  is true, add a stamp now and move the entry to the LRU tail.
//
// So every packet through a --set rule, or a matching --update rule, is a
// hit, whatever the rule's target does with it.
func (r *irecent) match(s *Sim, p *pkt) bool {
	t := r.list
	addr := t.maskAddr(p.src)
	ret := r.invert
	key := keyOfAddr(addr)
	ix := t.idx.get(key)
	if ix < 0 {
		if r.op != iptables.Set {
			if s.opts.Explain {
				s.note("recent %s: %s %s: not in the list%s", t.name, r.opString(), addr, r.inverted(false))
			}
			return ret
		}
		t.insert(s, addr, p.j)
		if s.opts.Explain {
			s.note("recent %s: set %s: new entry (%d in the list)", t.name, addr, t.count)
		}
		return !ret
	}
	switch r.op {
	case iptables.Set:
		ret = !ret
	case iptables.Remove:
		t.remove(ix)
		if s.opts.Explain {
			s.note("recent %s: removed %s", t.name, addr)
		}
		ret = !ret
	case iptables.Rcheck, iptables.Update:
		e := &t.entries[ix]
		since := p.j - r.seconds
		hits := 0
		matched := false
		ring := t.ring(ix)
		for i := 0; i < e.nstamps; i++ {
			if r.seconds > 0 && since > ring[i] {
				continue
			}
			hits++
			if r.hitcount == 0 || hits >= r.hitcount {
				matched = true
				break
			}
		}
		if matched {
			ret = !ret
		}
		if s.opts.Explain {
			s.note("recent %s: %s %s: %s", t.name, r.opString(), addr, r.window(hits, matched, ring[(e.index-1)&t.ringMask]))
		}
		if r.reap {
			r.reapHead(s, since, ix, r.op == iptables.Update && ret)
		}
	}
	if r.op == iptables.Set || (r.op == iptables.Update && ret) {
		if ix2 := t.idx.get(key); ix2 >= 0 {
			t.stamp(ix2, p.j)
			if s.opts.Explain && r.op == iptables.Update {
				s.note("recent %s: stamped %s at %s", t.name, addr, fmtJiffies(p.j))
			}
		}
	}
	return ret
}

func (r *irecent) window(hits int, matched bool, last int64) string {
	var w string
	if r.seconds > 0 {
		w = " within " + fmtTime(jiffyDur(r.seconds))
	}
	var need string
	if r.hitcount > 0 {
		need = ", needs " + itoa(r.hitcount)
	}
	res := "no match"
	if matched {
		res = "match"
	}
	res += r.inverted(matched)
	h := itoa(hits)
	if matched && r.hitcount == 0 {
		h = "a"
	}
	return h + " hit" + plural(hits) + w + need + " (last at " + fmtJiffies(last) + "): " + res
}

func (r *irecent) opString() string {
	if r.invert {
		return "! " + string(r.op)
	}
	return string(r.op)
}

// inverted says what ! makes of a result.
func (r *irecent) inverted(matched bool) string {
	if !r.invert {
		return ""
	}
	if matched {
		return ", inverted: no match"
	}
	return ", inverted: match"
}

// reapHead is recent_entry_reap: only the LRU head is looked at, and
// deleted when its newest stamp is older than the window, unless it is
// the entry about to be updated.
func (r *irecent) reapHead(s *Sim, since int64, working int32, update bool) {
	t := r.list
	h := t.head
	if h < 0 || (h == working && update) {
		return
	}
	e := &t.entries[h]
	if since > t.ring(h)[(e.index-1)&t.ringMask] {
		if s.opts.Explain {
			s.note("recent %s: reaped %s", t.name, e.addr)
		}
		t.remove(h)
	}
}
