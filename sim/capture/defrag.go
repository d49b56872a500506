package capture

import (
	"encoding/binary"
	"time"

	"kwl.dev/kwl/lang"
)

// Reassembly timeouts: how long the kernel keeps the fragments of an
// incomplete datagram, from its first fragment to arrive (the timer is
// not restarted by later ones).
const (
	// FragTimeout4 is net.ipv4.ipfrag_time (IP_FRAG_TIME).
	FragTimeout4 = 30 * time.Second
	// FragTimeout6 is net.netfilter.nf_conntrack_frag6_timeout
	// (IPV6_FRAG_TIMEOUT), the timeout of the queues of nf_defrag_ipv6.
	FragTimeout6 = 60 * time.Second
)

// fragMaxDist is net.ipv4.ipfrag_max_dist: an IPv4 datagram whose
// source sent more than this many other fragments since its last one is
// started over (ip_frag_too_far).
const fragMaxDist = 64

// fragKeep is how many bytes of a datagram's payload (after the IPv4
// header, or after the IPv6 fragment header) a queue keeps: enough for
// the extension headers and transport header the firewall reads. The
// kernel keeps the whole datagram; the rest only counts in length.
const fragKeep = 512

// Defrag reassembles IP fragments as the kernel does before conntrack
// (nf_defrag_ipv4 and nf_defrag_ipv6, at priority -400, before every
// rule): the firewall sees a datagram only when its last fragment
// arrives, at that time, and never sees one whose fragments do not all
// arrive within the timeout. It follows the kernel's rules
// (net/ipv4/ip_fragment.c ip_frag_queue, net/ipv6/netfilter/
// nf_conntrack_reasm.c nf_ct_frag6_queue, net/ipv4/inet_fragment.c
// inet_frag_queue_insert):
//
//   - fragments belong together by source, destination, identification
//     and (IPv4) protocol;
//   - a fragment that overlaps another but is not wholly inside the run
//     of fragments it falls in discards the datagram; one wholly inside
//     is a duplicate, dropped;
//   - IPv4: a fragment contradicting the datagram's end, or empty,
//     discards the datagram; IPv6: it is dropped and the datagram kept;
//   - an IPv6 fragment (but the last) whose length is not a multiple of
//     8 ends its datagram and goes on as it is; so does an IPv6 first
//     fragment that does not hold the whole transport header (RFC 8200
//     4.5) and a jumbogram;
//   - an IPv4 source that sends more than 64 fragments of other
//     datagrams between two of one datagram starts that one over
//     (ipfrag_max_dist);
//   - a datagram longer than 65535 bytes, or with fragments of both ECN
//     and non-ECN marks, is dropped.
//
// It does not model the kernel's memory limit (ipfrag_high_thresh, 4 MB
// of buffers per family, past which fragments are dropped), which
// depends on the receiving driver's buffer sizes.
//
// The zero Defrag is ready to use. It is not safe for concurrent use.
type Defrag struct {
	queues map[fragKey]*fragQueue
	peers  map[[16]byte]*fragPeer // IPv4 sources with queues, for ipfrag_max_dist
	expiry []fragTimer            // queues in order of expiry (from head)
	head   int
	now    time.Duration // the latest time seen: the clock never goes back
	ecn6   uint8         // the ECN bits of the IPv6 packet being decoded
	stats  FragStats
}

// FragStats counts what a Defrag did with the fragments it was given.
type FragStats struct {
	Fragments   int // fragments seen
	Reassembled int // datagrams completed, each evaluated once
	Expired     int // incomplete datagrams whose timeout passed
	Discarded   int // datagrams discarded: overlaps, bad lengths, too large, ECN, started over
	Pending     int // incomplete datagrams still waiting at the latest time seen
}

// Decode is Decode, with fragments reassembled: a fragment that
// completes a datagram comes back as that datagram (p.Frags fragments,
// the first fragment's headers, p.N and p.Time of the completing one);
// every other fragment comes back skipped, with what became of it.
// p.Time should be the time since the capture began; it may go back,
// and the reassembly's clock does not.
func (d *Defrag) Decode(lt LinkType, frame []byte, p *Packet) { decode(lt, frame, p, d) }

// Stats reports what d has done so far. Datagrams whose timeout has
// passed by the latest time seen count as expired, the others as
// pending.
func (d *Defrag) Stats() FragStats {
	d.expire()
	s := d.stats
	s.Pending = len(d.queues)
	return s
}

// fragKey names a datagram's queue (frag_v4_compare_key,
// frag_v6_compare_key; the interface and the defrag user are the same
// for all packets of a capture).
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8 // IPv4 only
	v6       bool
}

// fragRun is a run of adjacent fragments (inet_fragment.c): fragments
// that arrive in order at the end of the datagram extend the last run;
// one that falls in a gap is a run of its own.
type fragRun struct{ off, end int }

type fragQueue struct {
	key     fragKey
	expires time.Duration
	runs    []fragRun // disjoint, by offset; the last ends at the highest end
	length  int       // the datagram's payload length, as far as known (q.len)
	meat    int       // bytes received
	frags   int       // fragments received
	first   bool      // the fragment at offset 0 arrived
	last    bool      // the last fragment (no more-fragments flag) arrived
	ecn     uint8     // ECN marks of the fragments, as bits (ip4_frag_ecn)
	rid     uint32    // the source's fragment count at this queue's last fragment (IPv4)
	hlen    int       // the first fragment's IPv4 header, or IPv6 headers before the fragment header
	next    uint8     // IPv6: the first fragment's next header after the fragment header
	data    [fragKeep]byte
	known   [fragKeep / 64]uint64 // which bytes of data were captured
}

type fragPeer struct {
	rid    uint32 // fragments seen from the source (inet_peer.rid)
	queues int
}

type fragTimer struct {
	key     fragKey
	expires time.Duration
}

// ECN marks of fragments, as bits (IPFRAG_ECN_*), and the combinations
// that make the kernel drop the datagram (ip_frag_ecn_table): a
// non-ECN-capable fragment with an ECN-capable or marked one.
const ecnNotECT = 1

func ecnInvalid(bits uint8) bool { return bits&ecnNotECT != 0 && bits != ecnNotECT }

// Skip reasons, by family.
type fragReasons struct {
	held, dup, overlap, badEnd, empty, tooBig, ecn string
}

var reasons4 = fragReasons{
	held:    "IPv4 fragment, held for reassembly",
	dup:     "IPv4 fragment, a duplicate (dropped)",
	overlap: "IPv4 fragment overlapping another (datagram discarded)",
	badEnd:  "IPv4 fragment past its datagram's end (datagram discarded)",
	empty:   "IPv4 fragment without data (datagram discarded)",
	tooBig:  "IPv4 fragments of a datagram longer than 65535 bytes (dropped)",
	ecn:     "IPv4 fragments with mixed ECN marks (datagram dropped)",
}

var reasons6 = fragReasons{
	held:    "IPv6 fragment, held for reassembly",
	dup:     "IPv6 fragment, a duplicate (dropped)",
	overlap: "IPv6 fragment overlapping another (datagram discarded)",
	badEnd:  "IPv6 fragment past its datagram's end (dropped)",
	empty:   "IPv6 fragment without data (dropped)",
	tooBig:  "IPv6 fragment ending past 65535 bytes (dropped)",
	ecn:     "IPv6 fragments with mixed ECN marks (datagram dropped)",
}

// tick advances the clock to t and forgets the queues that expired.
func (d *Defrag) tick(t time.Duration) {
	if t > d.now {
		d.now = t
	}
	d.expire()
}

func (d *Defrag) expire() {
	for d.head < len(d.expiry) && d.expiry[d.head].expires <= d.now {
		tm := d.expiry[d.head]
		d.expiry[d.head] = fragTimer{}
		d.head++
		if q := d.queues[tm.key]; q != nil && q.expires == tm.expires {
			d.stats.Expired++
			d.drop(q)
		}
	}
	if d.head > 1024 && d.head*2 > len(d.expiry) {
		d.expiry = append(d.expiry[:0], d.expiry[d.head:]...)
		d.head = 0
	}
}

// queue finds or creates the queue of key.
func (d *Defrag) queue(key fragKey) *fragQueue {
	if q := d.queues[key]; q != nil {
		return q
	}
	if d.queues == nil {
		d.queues = map[fragKey]*fragQueue{}
	}
	q := &fragQueue{key: key}
	d.queues[key] = q
	d.arm(q)
	if !key.v6 {
		if d.peers == nil {
			d.peers = map[[16]byte]*fragPeer{}
		}
		pe := d.peers[key.src]
		if pe == nil {
			pe = &fragPeer{}
			d.peers[key.src] = pe
		}
		pe.queues++
	}
	return q
}

// arm starts q's timer at the current time.
func (d *Defrag) arm(q *fragQueue) {
	q.expires = d.now + FragTimeout4
	if q.key.v6 {
		q.expires = d.now + FragTimeout6
	}
	d.expiry = append(d.expiry, fragTimer{q.key, q.expires})
}

// drop forgets q (inet_frag_kill).
func (d *Defrag) drop(q *fragQueue) {
	delete(d.queues, q.key)
	if !q.key.v6 {
		if pe := d.peers[q.key.src]; pe != nil {
			if pe.queues--; pe.queues <= 0 {
				delete(d.peers, q.key.src)
			}
		}
	}
}

// Results of inserting a fragment (inet_frag_queue_insert).
const (
	fragOK = iota
	fragDup
	fragOverlap
)

// insert places the fragment [off, end) among q's runs.
func (q *fragQueue) insert(off, end int) int {
	n := len(q.runs)
	if n == 0 || q.runs[n-1].end < end {
		// At the end: the common case.
		if n > 0 && off < q.runs[n-1].end {
			return fragOverlap
		}
		if n > 0 && off == q.runs[n-1].end {
			q.runs[n-1].end = end
		} else {
			q.runs = append(q.runs, fragRun{off, end})
		}
		return fragOK
	}
	// In the middle: the runs are disjoint, so the first one that ends
	// after off is the only one the fragment can fall in.
	i := 0
	for i < n && q.runs[i].end <= off {
		i++
	}
	if r := q.runs[i]; end > r.off {
		if off >= r.off && end <= r.end {
			return fragDup
		}
		return fragOverlap
	}
	q.runs = append(q.runs, fragRun{})
	copy(q.runs[i+1:], q.runs[i:])
	q.runs[i] = fragRun{off, end}
	return fragOK
}

// keep copies what was captured of the fragment's data (at offset off
// of the datagram's payload) into q.
func (q *fragQueue) keep(off int, data []byte) {
	if off >= fragKeep {
		return
	}
	n := copy(q.data[off:], data)
	for i := off; i < off+n; i++ {
		q.known[i/64] |= 1 << (i % 64)
	}
}

// captured returns the bytes of the datagram's payload that were
// captured, from its start up to the first byte that was not.
func (q *fragQueue) captured() []byte {
	n := 0
	for n < fragKeep && n < q.length && q.known[n/64]&(1<<(n%64)) != 0 {
		n++
	}
	return q.data[:n]
}

// fragment4 takes an IPv4 fragment: b is the packet up to its IP length
// (or as much as was captured), ihl its header length, total its IP
// length and ff its flags and fragment offset field. p has its addresses,
// protocol and length.
func (d *Defrag) fragment4(b []byte, ihl, total int, ff uint16, p *Packet) {
	d.tick(p.Time)
	d.stats.Fragments++
	key := fragKey{id: uint32(binary.BigEndian.Uint16(b[4:6])), proto: b[9]}
	src, dst := p.Src.As16(), p.Dst.As16()
	key.src, key.dst = src, dst
	q := d.queue(key)
	rs := &reasons4

	// ip_frag_too_far: the source's fragments since this queue's last.
	pe := d.peers[key.src]
	pe.rid++
	start := q.rid
	q.rid = pe.rid
	if len(q.runs) > 0 && pe.rid-start > fragMaxDist {
		// ip_frag_reinit: the datagram starts over with this fragment.
		d.stats.Discarded++
		rid := q.rid
		*q = fragQueue{key: key, rid: rid}
		d.arm(q)
	}

	off := int(ff&0x1fff) * 8
	end := off + total - ihl
	more := ff&0x2000 != 0
	if !more {
		if end < q.length || q.last && end != q.length {
			d.discard(q, p, rs.badEnd)
			return
		}
		q.last, q.length = true, end
	} else {
		end &^= 7
		if end > q.length {
			if q.last {
				d.discard(q, p, rs.badEnd)
				return
			}
			q.length = end
		}
	}
	if end == off {
		d.discard(q, p, rs.empty)
		return
	}
	switch q.insert(off, end) {
	case fragDup:
		p.Skipped = rs.dup
		return
	case fragOverlap:
		d.discard(q, p, rs.overlap)
		return
	}
	q.meat += end - off
	q.frags++
	q.ecn |= 1 << (b[1] & 3)
	if data := b[min(ihl, len(b)):]; len(data) > end-off {
		q.keep(off, data[:end-off])
	} else {
		q.keep(off, data)
	}
	if off == 0 {
		q.first, q.hlen = true, ihl
	}
	if !q.first || !q.last || q.meat != q.length {
		p.Skipped = rs.held
		return
	}
	// ip_frag_reasm: the datagram, with the first fragment's header.
	d.drop(q)
	if ecnInvalid(q.ecn) {
		d.stats.Discarded++
		p.Skipped = rs.ecn
		return
	}
	if q.hlen+q.length > 65535 {
		d.stats.Discarded++
		p.Skipped = rs.tooBig
		return
	}
	d.stats.Reassembled++
	p.Len = q.hlen + q.length
	p.Frags = uint16(min(q.frags, 65535))
	decodeTransport(q.captured(), q.length, p)
}

// discard kills q and skips p for reason.
func (d *Defrag) discard(q *fragQueue, p *Packet, reason string) {
	d.stats.Discarded++
	d.drop(q)
	p.Skipped = reason
}

// fragment6 takes an IPv6 packet at its fragment header: b is what was
// captured from the fragment header on, plen how many bytes of the packet
// are left from there, at the offset of the fragment header in the
// packet (40 and the extension headers before it). p has its addresses.
// It reports whether it took the packet: false means it goes on as it
// is, as the kernel lets it (nf_ct_frag6_gather returning 0).
func (d *Defrag) fragment6(b []byte, plen, at int, p *Packet) bool {
	ff := binary.BigEndian.Uint16(b[2:4])
	off := int(ff &^ 7)
	more := ff&1 != 0
	if off == 0 && thdrTruncated(b, plen) {
		// RFC 8200 4.5: the kernel does not queue a first fragment
		// without the whole upper-layer header; it goes on as it is.
		return false
	}
	d.tick(p.Time)
	d.stats.Fragments++
	rs := &reasons6
	key := fragKey{id: binary.BigEndian.Uint32(b[4:8]), v6: true}
	key.src, key.dst = p.Src.As16(), p.Dst.As16()
	// The queue exists from here on, whatever becomes of the fragment
	// (fq_find before nf_ct_frag6_queue); a dropped fragment leaves it
	// as it is, timer and all.
	q := d.queue(key)
	end := off + plen - 8
	if end > 65535 {
		p.Skipped = rs.tooBig
		return true
	}
	if !more {
		if end < q.length || q.last && end != q.length {
			p.Skipped = rs.badEnd
			return true
		}
		q.last, q.length = true, end
	} else {
		if end&7 != 0 {
			// Not a multiple of 8: the datagram is discarded and the
			// fragment goes on as it is (-EPROTO).
			d.stats.Discarded++
			d.drop(q)
			return false
		}
		if end > q.length {
			if q.last {
				p.Skipped = rs.badEnd
				return true
			}
			q.length = end
		}
	}
	if end == off {
		p.Skipped = rs.empty
		return true
	}
	switch q.insert(off, end) {
	case fragDup:
		p.Skipped = rs.dup
		return true
	case fragOverlap:
		d.discard(q, p, rs.overlap)
		return true
	}
	q.meat += end - off
	q.frags++
	q.ecn |= 1 << d.ecn6
	data := b[8:]
	if len(data) > end-off {
		data = data[:end-off]
	}
	q.keep(off, data)
	if off == 0 {
		q.first, q.hlen, q.next = true, at, b[0]
	}
	if !q.first || !q.last || q.meat != q.length {
		p.Skipped = rs.held
		return true
	}
	// nf_ct_frag6_reasm: the first fragment's headers, without the
	// fragment header, then the payload.
	d.drop(q)
	if ecnInvalid(q.ecn) {
		d.stats.Discarded++
		p.Skipped = rs.ecn
		return true
	}
	if q.hlen-40+q.length > 65535 {
		d.stats.Discarded++
		p.Skipped = rs.tooBig
		return true
	}
	d.stats.Reassembled++
	p.Len = q.hlen + q.length
	p.Frags = uint16(min(q.frags, 65535))
	walk6(q.next, q.captured(), q.length, q.hlen, p, nil)
	return true
}

// thdrTruncated reports whether a first fragment lacks part of its
// upper-layer header (ipv6frag_thdr_truncated): b starts at its
// fragment header, plen bytes of the packet are left from there.
func thdrTruncated(b []byte, plen int) bool {
	next := uint8(ipv6Fragment)
	for {
		var n int
		switch next {
		case ipv6Fragment:
			if plen < 8 || len(b) < 8 {
				return false
			}
			if binary.BigEndian.Uint16(b[2:4])&^7 != 0 {
				return false
			}
			n = 8
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if plen < 2 || len(b) < 2 {
				return false
			}
			n = (int(b[1]) + 1) * 8
		case ipv6AH:
			if plen < 2 || len(b) < 2 {
				return false
			}
			n = (int(b[1]) + 2) * 4
		case ipv6NoNext:
			return false
		default:
			need := 1
			switch lang.Proto(next) {
			case lang.TCP:
				need = 20
			case lang.UDP:
				need = 8
			case protoICMPv6:
				need = 8
			}
			return plen < need
		}
		// The kernel's walk moves on without checking the length; the
		// next header's read, or the final length check, fails.
		next, b, plen = b[0], b[min(n, len(b)):], plen-n
	}
}
