package capture

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"kwl.dev/kwl/lang"
)

func TestDecode(t *testing.T) {
	syn := tcpHdr(40000, 22, SYN)
	v4syn := ipv4("198.51.100.10", "192.0.2.1", 6, syn, v4opt{})
	v6syn := ipv6("2001:db8::10", "2001:db8::1", 6, syn)
	v4udp := ipv4("198.51.100.10", "192.0.2.1", 17, udpHdr(5353, 8000, 4), v4opt{})
	tcp4 := Packet{Src: netip.MustParseAddr("198.51.100.10"), Dst: netip.MustParseAddr("192.0.2.1"), Proto: lang.TCP, SPort: 40000, DPort: 22, Flags: SYN, Len: 40}
	tcp6 := Packet{Src: netip.MustParseAddr("2001:db8::10"), Dst: netip.MustParseAddr("2001:db8::1"), Proto: lang.TCP, SPort: 40000, DPort: 22, Flags: SYN, Len: 60}
	udp4 := Packet{Src: tcp4.Src, Dst: tcp4.Dst, Proto: lang.UDP, SPort: 5353, DPort: 8000, Len: 32, UDPLen: 12, PayloadN: 4}
	with := func(p Packet, f func(*Packet)) Packet { f(&p); return p }

	cases := []struct {
		name  string
		link  LinkType
		frame []byte
		want  Packet // compared when skip is ""
		skip  string // substring of Skipped
	}{
		{"ethernet ipv4 tcp", LinkEthernet, ether(0x0800, v4syn), tcp4, ""},
		{"ethernet padded to 60 bytes", LinkEthernet, append(ether(0x0800, v4syn), 0, 0, 0, 0, 0, 0), tcp4, ""},
		{"ethernet ipv6 tcp", LinkEthernet, ether(0x86dd, v6syn), tcp6, ""},
		{"ethernet udp", LinkEthernet, ether(0x0800, v4udp), udp4, ""},
		{"802.1Q", LinkEthernet, ether(0x0800, v4syn, 0x8100), tcp4, ""},
		{"802.1ad QinQ", LinkEthernet, ether(0x0800, v4syn, 0x88a8, 0x8100), tcp4, ""},
		{"9100 QinQ", LinkEthernet, ether(0x86dd, v6syn, 0x9100, 0x8100), tcp6, ""},
		{"too many VLAN tags", LinkEthernet, ether(0x0800, v4syn, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100, 0x8100), Packet{}, "VLAN tags"},
		{"truncated VLAN tag", LinkEthernet, ether(0x8100, []byte{0, 1}), Packet{}, "truncated VLAN tag"},
		{"ARP", LinkEthernet, ether(0x0806, make([]byte, 28)), Packet{}, "ARP"},
		{"802.3 LLC", LinkEthernet, ether(46, make([]byte, 46)), Packet{}, "802.3"},
		{"short ethernet", LinkEthernet, make([]byte, 10), Packet{}, "truncated Ethernet"},
		{"empty frame", LinkEthernet, nil, Packet{}, "captured length 0"},
		{"sll", LinkLinuxSLL, sll(0x0800, v4syn), tcp4, ""},
		{"sll ipv6", LinkLinuxSLL, sll(0x86dd, v6syn), tcp6, ""},
		{"short sll", LinkLinuxSLL, make([]byte, 15), Packet{}, "truncated Linux cooked (SLL)"},
		{"sll2", LinkSLL2, sll2(0x0800, v4syn), tcp4, ""},
		{"sll2 ipv6", LinkSLL2, sll2(0x86dd, v6syn), tcp6, ""},
		{"short sll2", LinkSLL2, make([]byte, 19), Packet{}, "SLL2"},
		{"raw ipv4", LinkRaw, v4syn, tcp4, ""},
		{"raw ipv6", LinkRaw, v6syn, tcp6, ""},
		{"raw not ip", LinkRaw, []byte{0x20, 0, 0}, Packet{}, "version 2"},
		{"raw dlt 12", LinkRawOld1, v4syn, tcp4, ""},
		{"linktype ipv4", LinkIPv4, v4syn, tcp4, ""},
		{"linktype ipv4 with ipv6 in it", LinkIPv4, v6syn, Packet{}, "IP version 6 in a LINKTYPE_IPV4"},
		{"linktype ipv6", LinkIPv6, v6syn, tcp6, ""},
		{"linktype ipv6 with ipv4 in it", LinkIPv6, v4syn, Packet{}, "IP version 4 in a LINKTYPE_IPV6"},
		{"null little-endian ipv4", LinkNull, null(2, binary.LittleEndian, v4syn), tcp4, ""},
		{"null big-endian ipv4", LinkNull, null(2, binary.BigEndian, v4syn), tcp4, ""},
		{"null darwin ipv6", LinkNull, null(30, binary.LittleEndian, v6syn), tcp6, ""},
		{"null freebsd ipv6", LinkNull, null(28, binary.LittleEndian, v6syn), tcp6, ""},
		{"null openbsd ipv6", LinkNull, null(24, binary.BigEndian, v6syn), tcp6, ""},
		{"null linux ipv6", LinkNull, null(10, binary.LittleEndian, v6syn), tcp6, ""},
		{"loop ipv4", LinkLoop, null(2, binary.BigEndian, v4syn), tcp4, ""},
		{"null unknown family", LinkNull, null(7, binary.LittleEndian, v4syn), Packet{}, "unknown address family"},
		{"short null", LinkNull, []byte{2, 0}, Packet{}, "truncated loopback"},
		{"nflog ipv4", LinkNFLog, nflog(2, v4syn), tcp4, ""},
		{"nflog ipv6", LinkNFLog, nflog(10, v6syn), tcp6, ""},
		{"nflog without payload", LinkNFLog, []byte{2, 0, 0, 1, 8, 0, 10, 0, 'a', 'b', 'c', 0}, Packet{}, "without a packet"},
		{"nflog bad attribute", LinkNFLog, []byte{2, 0, 0, 1, 200, 0, 9, 0}, Packet{}, "malformed NFLOG"},
		{"unsupported link type", LinkType(147), v4syn, Packet{}, "unsupported link type 147"},

		{"ipv4 options", LinkRaw, ipv4("198.51.100.10", "192.0.2.1", 6, syn, v4opt{options: 8}), with(tcp4, func(p *Packet) { p.Len = 48 }), ""},
		{"ipv4 first fragment", LinkRaw, ipv4("198.51.100.10", "192.0.2.1", 6, syn, v4opt{moreFrag: true}), tcp4, ""},
		{"ipv4 later fragment", LinkRaw, ipv4("198.51.100.10", "192.0.2.1", 6, syn, v4opt{fragOff: 1480}), Packet{}, "later IPv4 fragment (offset 1480)"},
		{"ipv4 truncated header", LinkRaw, v4syn[:19], Packet{}, "truncated IPv4 header"},
		{"ipv4 ihl < 5", LinkRaw, func() []byte { b := clone(v4syn); b[0] = 0x44; return b }(), Packet{}, "bad IPv4 header length 16"},
		{"ipv4 total < ihl", LinkRaw, func() []byte { b := clone(v4syn); b[3] = 10; return b }(), Packet{}, "bad IPv4 total length"},
		{"ipv4 options cut", LinkRaw, ipv4("198.51.100.10", "192.0.2.1", 6, nil, v4opt{options: 40})[:30], Packet{}, "truncated IPv4 options"},
		{"ipv4 cut by snap length after ports", LinkRaw, v4syn[:34], tcp4, ""},
		{"tcp cut before flags", LinkRaw, v4syn[:30], Packet{}, "truncated TCP header"},
		{"tcp data offset < 5", LinkRaw, func() []byte { b := clone(v4syn); b[32] = 4 << 4; return b }(), Packet{}, "bad TCP header length 16"},
		{"tcp data offset past the segment", LinkRaw, func() []byte { b := clone(v4syn); b[32] = 7 << 4; return b }(), Packet{}, "bad TCP header length 28 > 20"},
		{"udp truncated", LinkRaw, v4udp[:25], Packet{}, "truncated UDP"},
		{"icmp echo", LinkRaw, ipv4("198.51.100.10", "192.0.2.1", 1, []byte{8, 0, 0, 0, 0, 1, 0, 1}, v4opt{}),
			Packet{Src: tcp4.Src, Dst: tcp4.Dst, Proto: lang.ICMP, ICMPType: 8, Len: 28}, ""},
		{"icmp truncated", LinkRaw, ipv4("198.51.100.10", "192.0.2.1", 1, []byte{8, 0}, v4opt{}), Packet{}, "truncated ICMP"},
		{"icmpv6 echo", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 58, []byte{128, 0, 0, 0, 0, 1, 0, 1}),
			Packet{Src: tcp6.Src, Dst: tcp6.Dst, Proto: 58, ICMPType: 128, Len: 48}, ""},
		{"other protocol", LinkRaw, ipv4("198.51.100.10", "192.0.2.1", 47, make([]byte, 8), v4opt{}),
			Packet{Src: tcp4.Src, Dst: tcp4.Dst, Proto: 47, Len: 28}, ""},

		{"ipv6 hop-by-hop", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 6, syn, ext{typ: ipv6HopByHop, body: 8}), with(tcp6, func(p *Packet) { p.Len = 68 }), ""},
		{"ipv6 hop routing dest", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 6, syn, ext{typ: ipv6HopByHop, body: 8}, ext{typ: ipv6Routing, body: 24}, ext{typ: ipv6DestOpts, body: 16}), with(tcp6, func(p *Packet) { p.Len = 108 }), ""},
		{"ipv6 first fragment", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 6, syn, ext{typ: ipv6Fragment, body: 8}), with(tcp6, func(p *Packet) { p.Len = 68 }), ""},
		{"ipv6 later fragment", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 6, syn, ext{typ: ipv6Fragment, body: 8, frag: 1448}), Packet{}, "later IPv6 fragment (offset 1448)"},
		{"ipv6 AH", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 17, udpHdr(5353, 8000, 4), ext{typ: ipv6AH, body: 24}),
			Packet{Src: tcp6.Src, Dst: tcp6.Dst, Proto: lang.UDP, SPort: 5353, DPort: 8000, Len: 76, UDPLen: 12, PayloadN: 4}, ""},
		{"ipv6 no next header", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 59, nil), Packet{Src: tcp6.Src, Dst: tcp6.Dst, Proto: 59, Len: 40}, ""},
		{"ipv6 truncated header", LinkRaw, v6syn[:39], Packet{}, "truncated IPv6 header"},
		{"ipv6 extension past the payload", LinkRaw, func() []byte {
			b := ipv6("2001:db8::10", "2001:db8::1", 6, syn, ext{typ: ipv6DestOpts, body: 8})
			b[41] = 200
			return b
		}(), Packet{}, "truncated IPv6 extension header"},
		{"ipv6 AH past the payload", LinkRaw, func() []byte {
			b := ipv6("2001:db8::10", "2001:db8::1", 6, syn, ext{typ: ipv6AH, body: 24})
			b[41] = 200
			return b
		}(), Packet{}, "truncated IPv6 authentication header"},
		{"ipv6 truncated AH", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 51, []byte{6, 0, 0, 0}),
			Packet{}, "truncated IPv6 authentication header"},
		// The kernel walks any number of extension headers
		// (ipv6_skip_exthdr, ipv6_find_hdr): 17 of them are followed.
		{"ipv6 17 extension headers", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 6, syn,
			ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8},
			ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8},
			ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 60, body: 8}, ext{typ: 0, body: 8}),
			with(tcp6, func(p *Packet) { p.Len = 60 + 17*8 }), ""},
		{"ipv6 extension headers to the end of the packet", LinkRaw, ipv6("2001:db8::10", "2001:db8::1", 60, nil,
			ext{typ: 60, body: 8}, ext{typ: 60, body: 8}), Packet{}, "truncated IPv6 extension header"},
		{"ipv6 payload length 0 (jumbo)", LinkRaw, func() []byte { b := clone(v6syn); b[4], b[5] = 0, 0; return b }(), tcp6, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Packet{N: 7, Time: 5, Skipped: "stale", DPort: 99}
			Decode(tc.link, tc.frame, &p)
			if p.N != 7 || p.Time != 5 {
				t.Errorf("Decode changed N or Time: %d %v", p.N, p.Time)
			}
			if tc.skip != "" {
				if !strings.Contains(p.Skipped, tc.skip) {
					t.Errorf("Skipped = %q, want it to contain %q", p.Skipped, tc.skip)
				}
				return
			}
			tc.want.N, tc.want.Time = 7, 5
			if p != tc.want {
				t.Errorf("got  %+v\nwant %+v", p, tc.want)
			}
		})
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// TestDecodeAllocs pins that decoding allocates nothing, for the packets
// that make up a replay.
func TestDecodeAllocs(t *testing.T) {
	frames := map[LinkType][]byte{
		LinkEthernet: ether(0x0800, ipv4("198.51.100.10", "192.0.2.1", 6, tcpHdr(1, 22, SYN), v4opt{}), 0x8100),
		LinkSLL2:     sll2(0x86dd, ipv6("2001:db8::10", "2001:db8::1", 17, udpHdr(1, 53, 0), ext{typ: ipv6HopByHop, body: 8})),
	}
	var p Packet
	for lt, f := range frames {
		if n := testing.AllocsPerRun(100, func() { Decode(lt, f, &p) }); n != 0 {
			t.Errorf("%v: %v allocations per packet", lt, n)
		}
	}
}

// TestDecodePayload: a UDP datagram's first 16 payload bytes are kept, as
// far as the IP length and the capture go.
func TestDecodePayload(t *testing.T) {
	dgram := func(payload []byte) []byte {
		b := []byte{0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 203, 0, 113, 66, 198, 51, 100, 1}
		binary.BigEndian.PutUint16(b[2:], uint16(28+len(payload)))
		u := binary.BigEndian.AppendUint16(nil, 40000)
		u = binary.BigEndian.AppendUint16(u, 62201)
		u = binary.BigEndian.AppendUint16(u, uint16(8+len(payload)))
		u = append(u, 0, 0)
		return append(append(b, u...), payload...)
	}
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i + 1)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		n     uint8
		ulen  uint16
	}{
		{"a token", dgram(seq(16)), 16, 24},
		{"longer", dgram(seq(40)), 16, 48},
		{"shorter", dgram(seq(5)), 5, 13},
		{"cut by the capture", dgram(seq(16))[:28+10], 10, 24},
		{"padded past the IP length", append(dgram(seq(3)), 9, 9, 9), 3, 11},
	} {
		var p Packet
		Decode(LinkRaw, tc.frame, &p)
		want := [PayloadSize]byte{}
		copy(want[:], seq(int(tc.n)))
		if p.Skipped != "" || p.PayloadN != tc.n || p.Payload != want || p.UDPLen != tc.ulen {
			t.Errorf("%s: payload %v (%d bytes), udp length %d, skipped %q; want %d bytes, length %d", tc.name, p.Payload, p.PayloadN, p.UDPLen, p.Skipped, tc.n, tc.ulen)
		}
	}
}
