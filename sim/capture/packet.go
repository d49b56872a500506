// Package capture reads packet captures (pcap and pcapng, through
// github.com/gopacket/gopacket/pcapgo) and decodes each frame into the
// Packet the simulator evaluates. It is also the simulator's packet type:
// test steps and generated traffic are Packets too.
package capture

import (
	"net/netip"
	"time"

	"kwl.dev/kwl/lang"
)

// TCPFlags are the flags of a TCP header: lang's, which test steps name.
type TCPFlags = lang.TCPFlags

// The TCP flags, with the values they have in the header.
const (
	FIN = lang.FIN
	SYN = lang.SYN
	RST = lang.RST
	PSH = lang.PSH
	ACK = lang.ACK
	URG = lang.URG
	ECE = lang.ECE
	CWR = lang.CWR
)

// PayloadSize is how many bytes of a UDP payload a Packet keeps: a
// token's (secret.TokenSize).
const PayloadSize = 16

// Packet is one IP packet as the firewall sees it.
type Packet struct {
	N     int           // 1-based index in its capture or test
	Time  time.Duration // since the first packet of the capture (or start of the test)
	Src   netip.Addr
	Dst   netip.Addr
	Proto lang.Proto
	SPort uint16 // TCP and UDP only
	DPort uint16
	Flags TCPFlags // TCP only
	Len   int      // IP length in bytes
	// ICMPType and ICMPCode are the first two bytes of an ICMP or ICMPv6
	// header (Proto 1 or 58).
	ICMPType, ICMPCode uint8
	// UDPLen is a UDP datagram's length field (header and payload, as
	// nft's "udp length" reads it); 0 for other protocols.
	UDPLen uint16
	// Payload holds the first PayloadN bytes of a UDP datagram's payload,
	// as far as the datagram and the capture go (at most PayloadSize);
	// the rest is zero. A datagram reassembled from fragments has none.
	Payload  [PayloadSize]byte
	PayloadN uint8
	// Frags is how many fragments the kernel reassembled into this
	// datagram (Defrag); 0 for a packet that was not fragmented.
	Frags uint16
	// Skipped is non-empty when the packet cannot be evaluated: not IP,
	// truncated, a fragment held for reassembly, ... It says why.
	Skipped string
}
