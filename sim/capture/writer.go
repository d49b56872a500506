package capture

import (
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"kwl.dev/kwl/lang"
)

// A Writer writes Packets as a pcap file of raw IP frames (link type
// 101), with nanosecond timestamps, that kwl sim, tcpdump and Wireshark
// read. Only the fields the simulator reads are written: addresses,
// protocol, ports and TCP flags, a UDP payload's first bytes, and the IP
// length (as zero padding).
type Writer struct {
	w     *pcapgo.Writer
	start time.Time
	buf   gopacket.SerializeBuffer
}

// NewWriter writes a pcap file header to w and returns a Writer whose
// packets' times count from start.
func NewWriter(w io.Writer, start time.Time) (*Writer, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return nil, err
	}
	return &Writer{w: pw, start: start, buf: gopacket.NewSerializeBuffer()}, nil
}

// Write writes one TCP or UDP packet.
func (w *Writer) Write(p *Packet) error {
	var l4 gopacket.SerializableLayer
	var next layers.IPProtocol
	var hdr int
	switch p.Proto {
	case lang.TCP:
		t := &layers.TCP{SrcPort: layers.TCPPort(p.SPort), DstPort: layers.TCPPort(p.DPort), Window: 64240,
			FIN: p.Flags&lang.FIN != 0, SYN: p.Flags&lang.SYN != 0, RST: p.Flags&lang.RST != 0, PSH: p.Flags&lang.PSH != 0,
			ACK: p.Flags&lang.ACK != 0, URG: p.Flags&lang.URG != 0}
		l4, next, hdr = t, layers.IPProtocolTCP, 20
	case lang.UDP:
		l4, next, hdr = &layers.UDP{SrcPort: layers.UDPPort(p.SPort), DstPort: layers.UDPPort(p.DPort)}, layers.IPProtocolUDP, 8
	default:
		return fmt.Errorf("capture: writing packet %d: protocol %d is not TCP or UDP", p.N, p.Proto)
	}
	var ip gopacket.NetworkLayer
	if p.Src.Unmap().Is4() {
		hdr += 20
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: next, Id: uint16(p.N),
			SrcIP: p.Src.Unmap().AsSlice(), DstIP: p.Dst.Unmap().AsSlice()}
	} else {
		hdr += 40
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, FlowLabel: uint32(p.N) & 0xfffff,
			SrcIP: p.Src.AsSlice(), DstIP: p.Dst.AsSlice()}
	}
	switch l := l4.(type) {
	case *layers.TCP:
		if err := l.SetNetworkLayerForChecksum(ip); err != nil {
			return err
		}
	case *layers.UDP:
		if err := l.SetNetworkLayerForChecksum(ip); err != nil {
			return err
		}
	}
	payload := gopacket.Payload(make([]byte, max(0, p.Len-hdr, int(p.PayloadN))))
	copy(payload, p.Payload[:p.PayloadN])
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(w.buf, opts, ip.(gopacket.SerializableLayer), l4, payload); err != nil {
		return fmt.Errorf("capture: writing packet %d: %v", p.N, err)
	}
	b := w.buf.Bytes()
	ci := gopacket.CaptureInfo{Timestamp: w.start.Add(p.Time), CaptureLength: len(b), Length: len(b)}
	return w.w.WritePacket(ci, b)
}
