package capture

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
)

// TestWriterRoundTrip: what Writer writes, Reader reads back as the same
// packets, IPv4 and IPv6, TCP with flags and UDP, at the same times.
func TestWriterRoundTrip(t *testing.T) {
	v4a, v4b := netip.MustParseAddr("203.0.113.66"), netip.MustParseAddr("198.51.100.1")
	v6a, v6b := netip.MustParseAddr("2001:db8::66"), netip.MustParseAddr("2001:db8:51::1")
	in := []Packet{
		{N: 1, Time: 0, Src: v4a, Dst: v4b, Proto: lang.TCP, SPort: 30001, DPort: 1600, Flags: lang.SYN, Len: 40},
		{N: 2, Time: 1500 * time.Microsecond, Src: v4a, Dst: v4b, Proto: lang.TCP, SPort: 30002, DPort: 22, Flags: lang.FIN | lang.PSH | lang.URG, Len: 40},
		{N: 3, Time: 2 * time.Second, Src: v4a, Dst: v4b, Proto: lang.UDP, SPort: 30003, DPort: 8000, Len: 128, UDPLen: 108, PayloadN: 16},
		{N: 4, Time: 3 * time.Second, Src: v6a, Dst: v6b, Proto: lang.TCP, SPort: 30004, DPort: 22, Flags: lang.SYN | lang.ACK, Len: 60},
		{N: 5, Time: 4 * time.Second, Src: v6a, Dst: v6b, Proto: lang.UDP, SPort: 30005, DPort: 62201, Len: 64, UDPLen: 24, PayloadN: 16,
			Payload: [16]byte{0x4a, 0x9c, 0xd5, 0x40, 0x24, 0xa4, 0xd4, 0x97, 0x37, 0x26, 0x86, 0x55, 0x01, 0x45, 0x1e, 0xe1}},
		{N: 6, Time: 5 * time.Second, Src: v4a, Dst: v4b, Proto: lang.UDP, SPort: 30006, DPort: 62201, Len: 33, UDPLen: 13, PayloadN: 5,
			Payload: [16]byte{1, 2, 3, 4, 5}},
	}
	var buf bytes.Buffer
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	w, err := NewWriter(&buf, start)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if err := w.Write(&in[i]); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		var p Packet
		err := r.Next(&p)
		if errors.Is(err, io.EOF) {
			if i != len(in) {
				t.Fatalf("read %d packets, wrote %d", i, len(in))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(in) || p != in[i] {
			t.Errorf("packet %d: read %+v, wrote %+v", i+1, p, in[i])
		}
	}
	if !r.Start().Equal(start) {
		t.Errorf("start %v, want %v", r.Start(), start)
	}
	if err := w.Write(&Packet{N: 7, Src: v4a, Dst: v4b, Proto: 1}); err == nil {
		t.Error("an ICMP packet was written")
	}
}
