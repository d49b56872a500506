package capture

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"kwl.dev/kwl/lang"
)

// LinkType is a capture's link-layer header type, numbered as in pcap and
// pcapng files (https://www.tcpdump.org/linktypes.html).
type LinkType uint16

// The link types Decode understands.
const (
	LinkNull     LinkType = 0   // BSD loopback: 4-byte address family in the capturing host's byte order
	LinkEthernet LinkType = 1   // Ethernet II, with 802.1Q and 802.1ad tags
	LinkRawOld1  LinkType = 12  // raw IP, as some BSDs number DLT_RAW
	LinkRawOld2  LinkType = 14  // raw IP, as other BSDs number DLT_RAW
	LinkRaw      LinkType = 101 // raw IPv4 or IPv6
	LinkLoop     LinkType = 108 // OpenBSD loopback: address family in network byte order
	LinkLinuxSLL LinkType = 113 // Linux cooked capture v1 (tcpdump -i any)
	LinkNFLog    LinkType = 239 // Linux netfilter log (nflog:GROUP)
	LinkIPv4     LinkType = 228 // raw IPv4 only
	LinkIPv6     LinkType = 229 // raw IPv6 only
	LinkSLL2     LinkType = 276 // Linux cooked capture v2
)

// linkNames are tcpdump's names for link types, so that an error names a
// link type the way the user's tools do.
var linkNames = map[LinkType]string{
	0: "NULL", 1: "EN10MB", 6: "IEEE802", 9: "PPP", 10: "FDDI", 12: "RAW",
	14: "RAW", 50: "PPP_HDLC", 101: "RAW", 104: "C_HDLC", 105: "IEEE802_11",
	107: "FRELAY", 108: "LOOP", 113: "LINUX_SLL", 119: "PRISM_HEADER",
	127: "IEEE802_11_RADIO", 160: "160", 182: "MFR", 187: "BLUETOOTH_HCI_H4",
	195: "IEEE802_15_4", 201: "BLUETOOTH_HCI_H4_WITH_PHDR", 220: "USB_LINUX_MMAPPED",
	227: "CAN_SOCKETCAN", 228: "IPV4", 229: "IPV6", 239: "NFLOG", 249: "USBPCAP",
	258: "PKTAP", 263: "BLUETOOTH_LE_LL_WITH_PHDR", 276: "LINUX_SLL2",
}

func (l LinkType) String() string {
	if n, ok := linkNames[l]; ok && n != strconv.Itoa(int(l)) {
		return n + " (" + strconv.Itoa(int(l)) + ")"
	}
	return "link type " + strconv.Itoa(int(l))
}

// Supported reports whether Decode understands frames of link type l.
func (l LinkType) Supported() bool {
	switch l {
	case LinkNull, LinkEthernet, LinkRawOld1, LinkRawOld2, LinkRaw, LinkLoop,
		LinkLinuxSLL, LinkNFLog, LinkIPv4, LinkIPv6, LinkSLL2:
		return true
	}
	return false
}

// EtherTypes of the headers Decode walks through.
const (
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100 // 802.1Q
	etherQinQ   = 0x88a8 // 802.1ad service tag
	etherQinQv1 = 0x9100 // pre-standard QinQ, still seen on old switches
	maxVLANTags = 8      // more tags than any network stacks is a malformed frame
)

// Protocol numbers past the IP header.
const (
	protoICMPv6  = 58
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
	ipv6AH       = 51
	ipv6NoNext   = 59
)

// Decode fills p's addresses, protocol, ports, flags and length from one
// frame of link type lt. It never keeps frame. It leaves N and Time alone
// and clears everything else first. A frame that cannot be evaluated (not
// IP, truncated, a later fragment, ...) gets p.Skipped set to the reason;
// Decode never panics, whatever frame holds.
//
// Decode takes each frame as it is: a first fragment is decoded as far
// as its own bytes go and a later one is skipped. The kernel reassembles
// fragments before the firewall sees them; Defrag.Decode does too.
func Decode(lt LinkType, frame []byte, p *Packet) { decode(lt, frame, p, nil) }

// decode is Decode, with fragments reassembled by d when d is not nil.
func decode(lt LinkType, frame []byte, p *Packet, d *Defrag) {
	n, t := p.N, p.Time
	*p = Packet{N: n, Time: t}
	if len(frame) == 0 {
		p.Skipped = "empty frame (captured length 0)"
		return
	}
	switch lt {
	case LinkEthernet:
		if len(frame) < 14 {
			p.Skipped = "truncated Ethernet header"
			return
		}
		decodeEther(binary.BigEndian.Uint16(frame[12:14]), frame[14:], p, d)
	case LinkLinuxSLL:
		// struct sll_header: type, ARPHRD, address length, 8-byte address,
		// protocol (pcap-linktype(7), LINKTYPE_LINUX_SLL)
		if len(frame) < 16 {
			p.Skipped = "truncated Linux cooked (SLL) header"
			return
		}
		decodeEther(binary.BigEndian.Uint16(frame[14:16]), frame[16:], p, d)
	case LinkSLL2:
		// struct sll2_header: protocol first, 20 bytes in all
		// (pcap-linktype(7), LINKTYPE_LINUX_SLL2)
		if len(frame) < 20 {
			p.Skipped = "truncated Linux cooked (SLL2) header"
			return
		}
		decodeEther(binary.BigEndian.Uint16(frame[0:2]), frame[20:], p, d)
	case LinkRaw, LinkRawOld1, LinkRawOld2:
		decodeIP(frame, p, d)
	case LinkIPv4:
		if frame[0]>>4 != 4 {
			p.Skipped = "IP version " + strconv.Itoa(int(frame[0]>>4)) + " in a LINKTYPE_IPV4 capture"
			return
		}
		decodeIPv4(frame, p, d)
	case LinkIPv6:
		if frame[0]>>4 != 6 {
			p.Skipped = "IP version " + strconv.Itoa(int(frame[0]>>4)) + " in a LINKTYPE_IPV6 capture"
			return
		}
		decodeIPv6(frame, p, d)
	case LinkNull, LinkLoop:
		if len(frame) < 4 {
			p.Skipped = "truncated loopback header"
			return
		}
		// DLT_NULL stores the family in the capturing host's byte order,
		// DLT_LOOP in network order; AF_INET6 differs between systems
		// (Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30).
		af := binary.LittleEndian.Uint32(frame)
		if af > 0xffff {
			af = binary.BigEndian.Uint32(frame)
		}
		switch af {
		case 2:
			decodeIPv4(frame[4:], p, d)
		case 10, 24, 28, 30:
			decodeIPv6(frame[4:], p, d)
		default:
			p.Skipped = "loopback frame of unknown address family (" + hex16(binary.BigEndian.Uint16(frame)) + hex16(binary.BigEndian.Uint16(frame[2:])) + "), not IP"
		}
	case LinkNFLog:
		decodeNFLog(frame, p, d)
	default:
		p.Skipped = "unsupported " + lt.String()
	}
}

// decodeEther decodes what follows an EtherType, through VLAN tags.
func decodeEther(typ uint16, b []byte, p *Packet, d *Defrag) {
	for tags := 0; typ == etherVLAN || typ == etherQinQ || typ == etherQinQv1; tags++ {
		if tags == maxVLANTags {
			p.Skipped = "more than " + strconv.Itoa(maxVLANTags) + " VLAN tags"
			return
		}
		if len(b) < 4 {
			p.Skipped = "truncated VLAN tag"
			return
		}
		typ = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	switch {
	case typ == etherIPv4:
		decodeIPv4(b, p, d)
	case typ == etherIPv6:
		decodeIPv6(b, p, d)
	case typ < 0x0600:
		p.Skipped = "802.3 frame (LLC), not IP"
	default:
		p.Skipped = "not IP (EtherType 0x" + hex16(typ) + etherName(typ) + ")"
	}
}

func etherName(t uint16) string {
	switch t {
	case 0x0806:
		return ", ARP"
	case 0x8035:
		return ", RARP"
	case 0x88cc:
		return ", LLDP"
	case 0x8863, 0x8864:
		return ", PPPoE"
	case 0x8847, 0x8848:
		return ", MPLS"
	}
	return ""
}

func hex16(v uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15]})
}

// decodeIP decodes a raw IP packet of either version.
func decodeIP(b []byte, p *Packet, d *Defrag) {
	switch b[0] >> 4 {
	case 4:
		decodeIPv4(b, p, d)
	case 6:
		decodeIPv6(b, p, d)
	default:
		p.Skipped = "not IP (version " + strconv.Itoa(int(b[0]>>4)) + ")"
	}
}

func decodeIPv4(b []byte, p *Packet, d *Defrag) {
	if len(b) < 20 {
		p.Skipped = "truncated IPv4 header"
		return
	}
	if b[0]>>4 != 4 {
		p.Skipped = "bad IPv4 header (version " + strconv.Itoa(int(b[0]>>4)) + ")"
		return
	}
	ihl := int(b[0]&15) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 {
		p.Skipped = "bad IPv4 header length " + strconv.Itoa(ihl)
		return
	}
	if total < ihl {
		p.Skipped = "bad IPv4 total length " + strconv.Itoa(total) + " < header length " + strconv.Itoa(ihl)
		return
	}
	if len(b) < ihl {
		p.Skipped = "truncated IPv4 options"
		return
	}
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.Proto = lang.Proto(b[9])
	p.Len = total
	// Ethernet pads short frames; the IP length says where the packet ends.
	// A capture cut by the snap length keeps what it has.
	if total < len(b) {
		b = b[:total]
	}
	if ff := binary.BigEndian.Uint16(b[6:8]); ff&0x3fff != 0 {
		// A fragment (more fragments, or an offset): the kernel
		// reassembles it before the firewall sees it (nf_defrag_ipv4).
		if d != nil {
			d.fragment4(b, ihl, total, ff, p)
			return
		}
		if off := ff & 0x1fff; off != 0 {
			p.Skipped = "later IPv4 fragment (offset " + strconv.Itoa(int(off)*8) + ")"
			return
		}
	}
	decodeTransport(b[ihl:], total-ihl, p)
}

func decodeIPv6(b []byte, p *Packet, d *Defrag) {
	if len(b) < 40 {
		p.Skipped = "truncated IPv6 header"
		return
	}
	if b[0]>>4 != 6 {
		p.Skipped = "bad IPv6 header (version " + strconv.Itoa(int(b[0]>>4)) + ")"
		return
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	p.Len = 40 + plen
	jumbo := plen == 0
	if jumbo {
		// A jumbogram (RFC 2675) or a packet with nothing after the header:
		// trust what was captured.
		plen = len(b) - 40
		p.Len = 40 + plen
	}
	if 40+plen < len(b) {
		b = b[:40+plen]
	}
	if jumbo {
		// The kernel does not reassemble a jumbogram (nf_ct_frag6_gather).
		d = nil
	} else if d != nil {
		d.ecn6 = b[1] >> 4 & 3 // the traffic class's ECN bits
	}
	walk6(b[6], b[40:], plen, 40, p, d)
}

// walk6 follows IPv6 extension headers from next, the header that b
// starts with, to the transport header, as the kernel's walk does
// (ipv6_skip_exthdr, ipv6_find_hdr): through any number of them, as far
// as the packet goes. plen is how many bytes of the packet are left from
// b on (b holds what was captured of them), at the offset at of the
// packet. A fragment header hands the packet to d, when not nil.
func walk6(next uint8, b []byte, plen, at int, p *Packet, d *Defrag) {
	for {
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6AH:
			// An AH counts its length in 4-byte words, less 2 (RFC 4302);
			// the others in 8-byte words, less 1 (RFC 8200).
			what, words, extra, n := "extension header", 8, 1, 0
			if next == ipv6AH {
				what, words, extra = "authentication header", 4, 2
			}
			if plen >= 8 && len(b) >= 8 {
				n = (int(b[1]) + extra) * words
			}
			if n == 0 || n > plen || n > len(b) {
				p.Proto = lang.Proto(next)
				p.Skipped = "truncated IPv6 " + what
				return
			}
			next, b, plen, at = b[0], b[n:], plen-n, at+n
		case ipv6Fragment:
			if plen < 8 || len(b) < 8 {
				p.Proto = lang.Proto(next)
				p.Skipped = "truncated IPv6 fragment header"
				return
			}
			if d != nil && d.fragment6(b, plen, at, p) {
				return
			}
			// The packet goes on as it is: the kernel's walk passes
			// a first fragment's header and stops at a later one's.
			if off := binary.BigEndian.Uint16(b[2:4]) >> 3; off != 0 {
				p.Proto = lang.Proto(b[0])
				p.Skipped = "later IPv6 fragment (offset " + strconv.Itoa(int(off)*8) + ")"
				return
			}
			next, b, plen, at = b[0], b[8:], plen-8, at+8
		case ipv6NoNext:
			p.Proto = lang.Proto(next)
			return
		default:
			decodeTransport6(next, b, plen, p)
			return
		}
	}
}

func decodeTransport6(next uint8, b []byte, plen int, p *Packet) {
	p.Proto = lang.Proto(next)
	decodeTransport(b, plen, p)
}

// decodeTransport reads ports and flags. b is what was captured of the
// transport header and payload, length what the IP header says it is.
func decodeTransport(b []byte, length int, p *Packet) {
	switch p.Proto {
	case lang.TCP:
		// Ports and flags sit in the first 14 bytes; a capture cut by the
		// snap length inside the options still has them.
		if len(b) < 14 {
			p.Skipped = "truncated TCP header"
			return
		}
		doff := int(b[12]>>4) * 4
		if doff < 20 {
			p.Skipped = "bad TCP header length " + strconv.Itoa(doff)
			return
		}
		// The kernel drops a segment whose header runs past the IP
		// length (nf_conntrack_proto_tcp.c, tcp_error: "truncated packet").
		if doff > length {
			p.Skipped = "bad TCP header length " + strconv.Itoa(doff) + " > " + strconv.Itoa(length) + " bytes of segment"
			return
		}
		p.SPort = binary.BigEndian.Uint16(b[0:2])
		p.DPort = binary.BigEndian.Uint16(b[2:4])
		p.Flags = TCPFlags(b[13])
	case lang.UDP, protoUDPLite:
		if len(b) < 8 {
			p.Skipped = "truncated UDP header"
			return
		}
		if length < 8 {
			p.Skipped = "bad UDP length " + strconv.Itoa(length)
			return
		}
		p.SPort = binary.BigEndian.Uint16(b[0:2])
		p.DPort = binary.BigEndian.Uint16(b[2:4])
		if p.Proto == lang.UDP {
			p.UDPLen = binary.BigEndian.Uint16(b[4:6])
			n := min(len(b), length) - 8
			n = copy(p.Payload[:], b[8:8+max(0, n)])
			p.PayloadN = uint8(n)
		}
	case lang.ICMP, protoICMPv6:
		if len(b) < 4 {
			p.Skipped = "truncated ICMP header"
			return
		}
		p.ICMPType, p.ICMPCode = b[0], b[1]
	}
}

const protoUDPLite = 136

// decodeNFLog finds the packet in an NFLOG record: a 4-byte header
// (family, version, resource id) and TLVs in host byte order, padded to 4
// bytes; NFULA_PAYLOAD (9) holds the IP packet (pcap-linktype(7),
// LINKTYPE_NFLOG; include/uapi/linux/netfilter/nfnetlink_log.h).
func decodeNFLog(b []byte, p *Packet, d *Defrag) {
	if len(b) < 4 {
		p.Skipped = "truncated NFLOG header"
		return
	}
	family := b[0]
	b = b[4:]
	for len(b) >= 4 {
		n := int(binary.LittleEndian.Uint16(b[0:2]))
		typ := binary.LittleEndian.Uint16(b[2:4]) & 0x7fff
		if n < 4 || n > len(b) {
			p.Skipped = "malformed NFLOG attribute"
			return
		}
		if typ == 9 {
			payload := b[4:n]
			if len(payload) == 0 {
				break
			}
			switch family {
			case 2:
				decodeIPv4(payload, p, d)
			case 10:
				decodeIPv6(payload, p, d)
			default:
				decodeIP(payload, p, d)
			}
			return
		}
		n = (n + 3) &^ 3
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	p.Skipped = "NFLOG record without a packet"
}
