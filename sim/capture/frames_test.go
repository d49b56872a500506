package capture

import (
	"encoding/binary"
	"net/netip"
)

// Frame builders for the tests: each returns a new slice with a header
// in front of payload.

func tcpHdr(sport, dport uint16, flags TCPFlags) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12], b[13] = 5<<4, byte(flags)
	return b
}

func udpHdr(sport, dport uint16, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+payload))
	return b
}

type v4opt struct {
	options  int    // bytes of IPv4 options (a multiple of 4)
	fragOff  uint16 // in bytes
	moreFrag bool
}

func ipv4(src, dst string, proto uint8, payload []byte, o v4opt) []byte {
	ihl := 20 + o.options
	b := make([]byte, ihl+len(payload))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	frag := o.fragOff / 8
	if o.moreFrag {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8], b[9] = 64, proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 20; i < ihl; i++ {
		b[i] = 1 // NOP options
	}
	copy(b[ihl:], payload)
	return b
}

// ext is an IPv6 extension header: its type and the bytes after its
// next-header field (the length byte is computed).
type ext struct {
	typ  uint8
	body int // total length in bytes, a multiple of 8 (AH: of 4)
	frag uint16
}

func ipv6(src, dst string, proto uint8, payload []byte, exts ...ext) []byte {
	var chain []byte
	for i, e := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1].typ
		}
		h := make([]byte, e.body)
		h[0] = next
		switch e.typ {
		case ipv6Fragment:
			binary.BigEndian.PutUint16(h[2:], e.frag&^7)
		case ipv6AH:
			h[1] = byte(e.body/4 - 2)
		default:
			h[1] = byte(e.body/8 - 1)
		}
		chain = append(chain, h...)
	}
	b := make([]byte, 40, 40+len(chain)+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(chain)+len(payload)))
	b[6], b[7] = proto, 64
	if len(exts) > 0 {
		b[6] = exts[0].typ
	}
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(append(b, chain...), payload...)
}

func ether(typ uint16, payload []byte, vlans ...uint16) []byte {
	b := make([]byte, 12, 14+4*len(vlans)+len(payload))
	copy(b, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2})
	for _, tpid := range vlans {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 100)
	}
	b = binary.BigEndian.AppendUint16(b, typ)
	return append(b, payload...)
}

func sll(typ uint16, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload))
	binary.BigEndian.PutUint16(b[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(b[4:], 6)
	binary.BigEndian.PutUint16(b[14:], typ)
	return append(b, payload...)
}

func sll2(typ uint16, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], 2) // interface index
	binary.BigEndian.PutUint16(b[8:], 1)
	b[11] = 6
	return append(b, payload...)
}

func null(af uint32, order binary.AppendByteOrder, payload []byte) []byte {
	b := order.AppendUint32(nil, af)
	return append(b, payload...)
}

// nflog wraps an IP packet as NFLOG does: header, a prefix TLV, then the
// payload TLV.
func nflog(family uint8, payload []byte) []byte {
	b := []byte{family, 0, 0, 20}
	b = binary.LittleEndian.AppendUint16(b, 4+5)
	b = binary.LittleEndian.AppendUint16(b, 10) // NFULA_PREFIX
	b = append(b, 'k', 'w', 'l', ' ', 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(4+len(payload)))
	b = binary.LittleEndian.AppendUint16(b, 9) // NFULA_PAYLOAD
	return append(b, payload...)
}
