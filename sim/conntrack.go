package sim

import (
	"net/netip"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// This file models conntrack (net/netfilter/nf_conntrack_core.c and the
// per-protocol trackers) as far as kwl's rulesets can observe it:
//
//   - ctinfo: a packet in the original direction is NEW until a reply has
//     been seen, then ESTABLISHED; replies are ESTABLISHED
//     (resolve_normal_ct). Every SYN retransmit before the SYN/ACK is NEW.
//   - Confirmation runs after the last hook (NF_IP_PRI_CONNTRACK_CONFIRM =
//     INT_MAX): a flow whose first packet is dropped leaves no entry, and
//     the next packet of it is NEW again (and goes through the nat chains
//     again).
//   - Timeouts are the kernel's defaults, in jiffies; an entry is dead
//     when now >= its timeout (nf_ct_is_expired).
//   - TCP: a packet whose flags are not one of the combinations tcp_error
//     accepts (tcp_valid_flags: PSH, ECE and CWR aside, SYN, SYN+URG,
//     SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK, ACK+URG) is
//     INVALID, with or without an entry, and changes no entry: a FIN
//     alone, an Xmas (FIN+PSH+URG) and a null packet are INVALID.
//   - TCP: enough of the state machine of nf_conntrack_proto_tcp.c for
//     SYN, SYN/ACK, ACK, FIN and RST; a SYN on a TIME_WAIT or CLOSE entry
//     reopens the flow; an ACK without an entry is picked up mid-stream
//     (nf_conntrack_tcp_loose=1) as NEW; a SYN/ACK, FIN or RST without an
//     entry is INVALID and creates none.
//   - DNAT: the reply tuple of a flow is the original one reversed after
//     the DNAT, so replies of the internal host find the flow.
//
// Not modelled: RELATED (no ICMP errors embedding a flow, no helpers),
// TCP window tracking (every in-flow segment is valid), ICMP ids (an echo
// flow is keyed by its addresses only).

// Conntrack timeouts (net/netfilter/nf_conntrack_proto_tcp.c tcp_timeouts,
// nf_conntrack_proto_udp.c udp_timeouts, nf_conntrack_proto_icmp.c,
// nf_conntrack_proto_generic.c).
const (
	tcpSynSentTimeout     = 2 * time.Minute
	tcpSynRecvTimeout     = 60 * time.Second
	tcpEstablishedTimeout = 5 * 24 * time.Hour
	tcpFinWaitTimeout     = 2 * time.Minute
	tcpCloseWaitTimeout   = 60 * time.Second
	tcpLastAckTimeout     = 30 * time.Second
	tcpTimeWaitTimeout    = 2 * time.Minute
	tcpCloseTimeout       = 10 * time.Second
	tcpUnackTimeout       = 5 * time.Minute // a mid-stream pickup until it is answered
	udpUnrepliedTimeout   = 30 * time.Second
	udpStreamTimeout      = 120 * time.Second // replied and older than 2 s (udp_packet, stream_ts)
	udpStreamAfter        = 2 * time.Second
	icmpTimeout           = 30 * time.Second
	genericTimeout        = 600 * time.Second
)

// tcpState is a TCP conntrack state.
type tcpState uint8

const (
	tcpNone tcpState = iota
	tcpSynSent
	tcpSynRecv
	tcpEstablished
	tcpFinWait
	tcpCloseWait
	tcpLastAck
	tcpTimeWait
	tcpClose
)

var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"}

var tcpTimeouts = [...]time.Duration{
	tcpNone:        tcpSynSentTimeout,
	tcpSynSent:     tcpSynSentTimeout,
	tcpSynRecv:     tcpSynRecvTimeout,
	tcpEstablished: tcpEstablishedTimeout,
	tcpFinWait:     tcpFinWaitTimeout,
	tcpCloseWait:   tcpCloseWaitTimeout,
	tcpLastAck:     tcpLastAckTimeout,
	tcpTimeWait:    tcpTimeWaitTimeout,
	tcpClose:       tcpCloseTimeout,
}

// Conntrack states as rules test them (ct state / --ctstate).
const (
	stNew uint8 = 1 << iota
	stEstablished
	stRelated
	stInvalid
	stUntracked
)

type direction uint8

const (
	dirOrig direction = iota
	dirReply
)

// tuple identifies one direction of a flow.
type tuple struct {
	src, dst     netip.Addr
	sport, dport uint16
	proto        lang.Proto
}

// conn is a conntrack entry. The fields the sweep and the index read
// for every entry they pass come first, so that they share a cache line,
// and an entry is two whole cache lines.
type conn struct {
	expires int64 // jiffies; dead when now >= expires
	// h is the hash of orig in the flow index, kept when the flow is
	// indexed so that removing it (the sweep, many flows per packet)
	// does not hash its addresses again.
	h         uint32
	id        int32 // place in the storage
	confirmed bool
	replied   bool // indexed in m (else in ix)
	dnat      bool // the original destination was rewritten
	seenReply bool
	local     bool // the flow ends at the firewall (went through input)
	fromLocal bool // the flow was opened by the firewall itself
	loose     bool // TCP picked up mid-stream
	// origGone and replyGone are set when another flow's promotion took
	// over the entry of the tuple in m, so that removing this flow does
	// not remove the other's entry.
	origGone, replyGone bool
	tcp                 tcpState
	orig                tuple
	// natDst and natPort are where DNAT sent the flow (the source of its
	// replies), when dnat; the reply tuple is otherwise orig reversed,
	// and is not stored (see reply), to keep the entries small.
	natPort uint16
	natDst  netip.Addr
	created int64 // jiffies
}

// reply returns the tuple of the flow's replies: the original one
// reversed, from where DNAT sent it.
func (c *conn) reply() tuple {
	r := tuple{src: c.orig.dst, dst: c.orig.src, sport: c.orig.dport, dport: c.orig.sport, proto: c.orig.proto}
	if c.dnat {
		r.src, r.sport = c.natDst, c.natPort
	}
	return r
}

// replyReversed reports whether the reply tuple is the original one
// reversed (no DNAT, or a DNAT that changed nothing).
func (c *conn) replyReversed() bool {
	return !c.dnat || (c.natDst == c.orig.dst && c.natPort == c.orig.dport)
}

// pkt is the packet being evaluated, with what conntrack and NAT made of it.
type pkt struct {
	pk           *capture.Packet
	now          time.Duration
	j            int64 // jiffies
	v6           bool
	proto        lang.Proto
	src, dst     netip.Addr // dst after DNAT
	sport, dport uint16     // dport after DNAT
	flags        capture.TCPFlags
	state        uint8 // one of stNew, stEstablished, stInvalid
	c            *conn // nil when INVALID
	dir          direction
	fresh        bool   // c was created by this packet and is not confirmed
	dnat         bool   // DNAT rewrote this packet's destination
	h            uint32 // the index hash of the packet's tuple, when hOK
	hOK          bool
}

func (p *pkt) reset(pk *capture.Packet, now time.Duration) {
	*p = pkt{pk: pk, now: now, j: jiffies(now), proto: pk.Proto,
		src: pk.Src.Unmap(), dst: pk.Dst.Unmap(), sport: pk.SPort, dport: pk.DPort, flags: pk.Flags}
	p.v6 = !p.src.Is4()
}

func (p *pkt) stateName() string {
	switch p.state {
	case stNew:
		return "new"
	case stEstablished:
		return "established"
	case stRelated:
		return "related"
	case stUntracked:
		return "untracked"
	}
	return "invalid"
}

// conntrack holds the flows. Entries live in chunks that never move, so
// that a *conn stays valid, and are recycled through a free list. Expired
// entries are removed when a lookup meets them, and by a sweep that looks
// at a few entries (in storage order) at every insertion: its cost is
// constant per flow, and an expired entry is gone after at most one round
// of the storage, so the table stays within a small factor of the live
// flows, whatever the length of the capture. Nothing depends on when an
// expired entry is removed: lookups treat it as gone either way.
//
// The flows are indexed in two tiers: those still unreplied (most flows
// of a capture: scans, dropped or unanswered attempts) in ix, a compact
// index whose slots point into the entries; those that have seen a reply
// in m, moved there by their first reply. A tuple is looked up in ix
// first, then in m.
type conntrack struct {
	m      map[tuple]*conn // both directions of the confirmed flows that have seen a reply
	ix     flowIndex       // both directions of the confirmed flows still unreplied
	chunks [][]conn
	used   int // entries handed out from chunks
	free   []*conn
	cursor int // the next entry the sweep looks at
}

// connChunk is the number of entries in a chunk.
const connChunk = 1024

// sweepPerInsert is the number of entries the sweep looks at per
// insertion: with k, expired entries add at most 1/k of the storage.
const sweepPerInsert = 4

func (ct *conntrack) init() {
	ct.m = make(map[tuple]*conn)
}

func (ct *conntrack) reset() {
	clear(ct.m)
	ct.ix.clear()
	ct.free = ct.free[:0]
	ct.used, ct.cursor = 0, 0
}

func (ct *conntrack) at(i int) *conn { return &ct.chunks[i/connChunk][i%connChunk] }

func (ct *conntrack) alloc() *conn {
	if n := len(ct.free); n > 0 {
		c := ct.free[n-1]
		ct.free = ct.free[:n-1]
		*c = conn{id: c.id}
		return c
	}
	if ct.used == len(ct.chunks)*connChunk {
		ct.chunks = append(ct.chunks, make([]conn, connChunk))
	}
	c := ct.at(ct.used)
	*c = conn{id: int32(ct.used)}
	ct.used++
	return c
}

// find returns the entry for t, or nil; a live entry rather than an
// expired one when the index holds both.
func (ct *conntrack) find(t *tuple, j int64) *conn {
	if ct.ix.n > 0 {
		if c := ct.indexGet(t, ct.ix.hash(t), j); c != nil {
			return c
		}
	}
	return ct.findMap(t)
}

// findH is find with the index hash of t computed.
func (ct *conntrack) findH(t *tuple, h uint32, j int64) *conn {
	if c := ct.indexGet(t, h, j); c != nil {
		return c
	}
	return ct.findMap(t)
}

func (ct *conntrack) findMap(t *tuple) *conn {
	if len(ct.m) > 0 {
		return ct.m[*t]
	}
	return nil
}

func (ct *conntrack) remove(c *conn) {
	if c.replied {
		if !c.origGone {
			delete(ct.m, c.orig)
		}
		if !c.replyGone {
			delete(ct.m, c.reply())
		}
	} else {
		ct.indexRemove(c)
	}
	c.confirmed = false
	ct.free = append(ct.free, c)
}

// promote moves a flow that has seen its first reply from ix to m.
func (ct *conntrack) promote(c *conn) {
	if !c.confirmed || c.replied {
		return
	}
	ct.indexRemove(c)
	c.replied = true
	c.origGone, c.replyGone = false, false
	ct.takeOver(c.orig, c)
	ct.takeOver(c.reply(), c)
}

// sweepSome looks at the next sweepPerInsert entries and removes the
// expired ones.
func (ct *conntrack) sweepSome(now int64) {
	for k := 0; k < sweepPerInsert && ct.used > 0; k++ {
		if ct.cursor >= ct.used {
			ct.cursor = 0
		}
		c := ct.at(ct.cursor)
		ct.cursor++
		if c.confirmed && now >= c.expires {
			ct.remove(c)
		}
	}
}

// isEchoRequest and isEchoReply tell ICMP echo flows (the only ICMP the
// model tracks) from the rest.
func isEchoRequest(p *pkt) bool {
	return (p.proto == lang.ICMP && p.pk.ICMPType == 8) || (p.proto == 58 && p.pk.ICMPType == 128)
}

func isEchoReply(p *pkt) bool {
	return (p.proto == lang.ICMP && p.pk.ICMPType == 0) || (p.proto == 58 && p.pk.ICMPType == 129)
}

// tcpValidFlags reports whether tcp_error (nf_conntrack_proto_tcp.c)
// lets a TCP packet with flags f be tracked: its table of valid flag
// combinations, in which PSH, ECE and CWR are always allowed.
func tcpValidFlags(f capture.TCPFlags) bool {
	const (
		syn = capture.SYN
		ack = capture.ACK
		fin = capture.FIN
		rst = capture.RST
		urg = capture.URG
	)
	switch f &^ (capture.PSH | capture.ECE | capture.CWR) {
	case syn, syn | urg, syn | ack, rst, rst | ack, fin | ack, fin | ack | urg, ack, ack | urg:
		return true
	}
	return false
}

// track finds or creates the packet's flow and sets its ctinfo, as
// nf_conntrack_in does at priority -200, before any of kwl's chains.
func (ct *conntrack) track(s *Sim, p *pkt) {
	if p.proto == lang.TCP && !tcpValidFlags(p.flags) {
		// tcp_error: the packet is not tracked (INVALID), and the flow
		// it may belong to is left as it was.
		p.state = stInvalid
		if s.opts.Explain {
			s.note("ct: invalid (TCP %s is not a valid flag combination)", flagString(p.flags))
		}
		return
	}
	t := tuple{src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, proto: p.proto}
	if p.proto != lang.TCP && p.proto != lang.UDP {
		t.sport, t.dport = 0, 0
	}
	if ct.ix.slots != nil {
		p.h, p.hOK = ct.ix.hash(&t), true
	}
	var c *conn
	if p.hOK {
		c = ct.findH(&t, p.h, p.j)
	} else {
		c = ct.findMap(&t)
	}
	if c != nil && p.j >= c.expires {
		if s.opts.Explain {
			s.note("ct: flow %s expired at %s", flowString(c), fmtJiffies(c.expires))
		}
		ct.remove(c)
		c = nil
	}
	if c != nil && p.proto == lang.TCP && t == c.orig && p.flags&capture.SYN != 0 && p.flags&capture.ACK == 0 &&
		(c.tcp == tcpTimeWait || c.tcp == tcpClose) {
		// A new SYN on a closing flow reopens it: the old entry is
		// killed and the packet starts a new one (tcp_packet).
		if s.opts.Explain {
			s.note("ct: flow %s in %s reopened by a SYN", flowString(c), tcpStateNames[c.tcp])
		}
		ct.remove(c)
		c = nil
	}
	if c != nil {
		p.c = c
		if t == c.orig {
			p.dir = dirOrig
			if c.seenReply {
				p.state = stEstablished
			} else {
				p.state = stNew
			}
			if c.dnat {
				// The flow's NAT binding applies to every packet of it.
				p.dst, p.dport = c.natDst, c.natPort
				p.dnat = true
			}
		} else {
			p.dir = dirReply
			p.state = stEstablished
			if !c.seenReply {
				c.seenReply = true
				ct.promote(c)
				if s.opts.Explain {
					s.note("ct: reply seen, flow %s is established", flowString(c))
				}
			}
		}
		ct.update(p, c)
		return
	}
	// No entry: does this packet start a flow?
	switch p.proto {
	case lang.TCP:
		f := p.flags
		switch {
		case f&capture.RST != 0, f&capture.SYN != 0 && f&capture.ACK != 0, f&capture.FIN != 0, f&(capture.SYN|capture.ACK) == 0:
			// tcp_new: only a SYN, or an ACK with loose pickup, opens.
			p.state = stInvalid
			if s.opts.Explain {
				s.note("ct: invalid (TCP %s without a flow)", flagString(f))
			}
			return
		}
	case lang.UDP:
	default:
		if p.proto == lang.ICMP || p.proto == 58 {
			if !isEchoRequest(p) {
				p.state = stInvalid
				return
			}
		}
	}
	c = ct.alloc()
	c.orig = t
	c.created = p.j
	if p.proto == lang.TCP {
		if p.flags&capture.SYN != 0 {
			c.tcp = tcpSynSent
		} else {
			c.tcp = tcpEstablished
			c.loose = true
		}
	}
	p.c, p.fresh, p.dir, p.state = c, true, dirOrig, stNew
	ct.update(p, c)
}

// update advances a flow's TCP state and refreshes its timeout, as the
// protocol trackers do for every packet (dropped or not, once confirmed).
func (ct *conntrack) update(p *pkt, c *conn) {
	var timeout time.Duration
	switch p.proto {
	case lang.TCP:
		f := p.flags
		switch {
		case f&capture.RST != 0:
			c.tcp = tcpClose
		case f&capture.SYN != 0 && f&capture.ACK != 0:
			if p.dir == dirReply && (c.tcp == tcpSynSent || c.tcp == tcpSynRecv) {
				c.tcp = tcpSynRecv
			}
		case f&capture.SYN != 0:
		case f&capture.FIN != 0:
			switch c.tcp {
			case tcpSynRecv, tcpEstablished:
				c.tcp = tcpFinWait
			case tcpFinWait, tcpCloseWait:
				c.tcp = tcpLastAck
			}
		case f&capture.ACK != 0:
			switch c.tcp {
			case tcpSynRecv:
				if p.dir == dirOrig {
					c.tcp = tcpEstablished
				}
			case tcpFinWait:
				c.tcp = tcpCloseWait
			case tcpLastAck:
				c.tcp = tcpTimeWait
			}
		}
		timeout = tcpTimeouts[c.tcp]
		if c.loose && !c.seenReply && timeout > tcpUnackTimeout {
			timeout = tcpUnackTimeout
		}
	case lang.UDP:
		timeout = udpUnrepliedTimeout
		if c.seenReply && p.j > c.created+jiffies(udpStreamAfter) {
			timeout = udpStreamTimeout
		}
	case lang.ICMP, 58:
		timeout = icmpTimeout
	default:
		timeout = genericTimeout
	}
	c.expires = p.j + jiffies(timeout)
}

// confirm inserts a fresh flow once its first packet has been accepted
// (__nf_conntrack_confirm).
func (ct *conntrack) confirm(s *Sim, p *pkt) {
	c := p.c
	if c == nil || !p.fresh {
		return
	}
	if p.dnat {
		c.dnat = true
		c.natDst, c.natPort = p.dst, p.dport
	}
	c.confirmed = true
	ct.indexAdd(c, p.h, p.hOK)
	p.fresh = false
	if s.opts.Explain {
		s.note("ct: new flow %s, expires at %s", flowString(c), fmtJiffies(c.expires))
	}
	ct.sweepSome(p.j)
}

// takeOver points the entry of t at c, marking the flow that had it (an
// expired flow not yet swept) as no longer owning it.
func (ct *conntrack) takeOver(t tuple, c *conn) {
	if old := ct.m[t]; old != nil && old != c {
		if old.orig == t {
			old.origGone = true
		}
		if old.reply() == t {
			old.replyGone = true
		}
	}
	ct.m[t] = c
}

// discard forgets a fresh flow whose first packet was dropped.
func (ct *conntrack) discard(s *Sim, p *pkt) {
	if p.c == nil || !p.fresh {
		return
	}
	if s.opts.Explain {
		s.note("ct: first packet dropped, no entry for %s", flowString(p.c))
	}
	ct.free = append(ct.free, p.c)
	p.c, p.fresh = nil, false
}

// Flows returns the number of live conntrack entries.
func (s *Sim) Flows() int {
	n := 0
	j := jiffies(s.now)
	for i := 0; i < s.ct.used; i++ {
		if c := s.ct.at(i); c.confirmed && j < c.expires {
			n++
		}
	}
	return n
}
