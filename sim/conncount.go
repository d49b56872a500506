package sim

import "kwl.dev/kwl/lang"

// This file models nf_conncount (net/netfilter/nf_conncount.c), which
// counts the connections of a key for nft's "ct count" and iptables'
// connlimit match alike. A key (a set element, a rule's own list, or a
// masked source of a connlimit rule) keeps a list of the original tuples
// of the connections it has seen, in the order they came. A packet's
// count is the list's length after __nf_conncount_add:
//
//   - when the list was added to (or collected) in this same jiffy
//     (list->last_gc), the packet's tuple is appended without a look at
//     the list;
//   - otherwise the list is walked in order: an entry whose connection
//     is gone from conntrack is evicted when it is two jiffies old or
//     more (a younger one may be another CPU's unconfirmed connection,
//     and is kept: the model takes every CPU to be another); an entry of
//     the packet's own tuple ends the walk with nothing added (a
//     retransmitted SYN counts once); an entry whose TCP connection is
//     in TIME_WAIT or CLOSE is evicted; after the ninth eviction the walk
//     stops, leaving the rest unlooked at;
//   - the packet's tuple is appended, with the jiffy.
//
// So a connection counts from its first packet's evaluation until
// conntrack forgets it (or, for TCP, closes it), and the first packet of
// one the ruleset then drops counts until the next walk two jiffies on.
//
// Not modelled: nft's set garbage collection, which walks each element's
// list once a second at a phase the model does not know (it also resets
// last_gc, so a packet in that jiffy skips its walk), and the removal of
// an element whose list it empties; xt_connlimit's collection of other
// keys' lists as it inserts a new key into its tree (the same effect on
// last_gc).

// ccMaxCollect is CONNCOUNT_GC_MAX_NODES: the walk stops after evicting
// one more than this many entries.
const ccMaxCollect = 8

// ccEntry is one connection of a list: its original tuple and the jiffy
// it was added in.
type ccEntry struct {
	t tuple
	j int64
}

// ccList is the list of one key.
type ccList struct {
	entries []ccEntry
	lastGC  int64
}

// newCCList returns the list of a key created in jiffy j
// (nf_conncount_list_init sets last_gc).
func newCCList(j int64) *ccList { return &ccList{lastGC: j} }

// add counts the packet's connection in the list and returns the count.
func (l *ccList) add(ct *conntrack, p *pkt) int {
	if p.c == nil {
		return 0 // no connection to count (the rules count new ones only)
	}
	t := p.c.orig
	if p.j != l.lastGC {
		out := l.entries[:0]
		collect := 0
		for i := 0; i < len(l.entries); i++ {
			e := l.entries[i]
			if collect > ccMaxCollect {
				out = append(out, l.entries[i:]...)
				break
			}
			c := ct.find(&e.t, p.j)
			if c == nil || !c.confirmed || p.j >= c.expires {
				if p.j-e.j >= 2 {
					collect++
					continue
				}
				if e.t == t {
					l.entries = append(out, l.entries[i:]...)
					return len(l.entries)
				}
				out = append(out, e)
				continue
			}
			if e.t == t {
				l.entries = append(out, l.entries[i:]...)
				return len(l.entries)
			}
			if c.orig.proto == lang.TCP && (c.tcp == tcpTimeWait || c.tcp == tcpClose) {
				collect++
				continue
			}
			out = append(out, e)
		}
		l.entries = out
	}
	l.entries = append(l.entries, ccEntry{t: t, j: p.j})
	l.lastGC = p.j
	return len(l.entries)
}
