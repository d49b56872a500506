package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// synFrom is an Ethernet frame of a SYN from 198.51.100.N to port.
func synFrom(n byte, port uint16) []byte {
	return ether(0x0800, ipv4("198.51.100."+itoa(int(n)), "192.0.2.1", 6, tcpHdr(40000, port, SYN), v4opt{}))
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// writePcap writes frames with pcapgo at the given offsets from t0.
func writePcap(t *testing.T, nanos bool, lt layers.LinkType, frames [][]byte, at []time.Duration) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(65535, lt); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(at[i]), CaptureLength: len(f), Length: len(f)}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// readAll reads every packet, returning them and the error that ended
// the reading (nil for a clean end).
func readAll(t *testing.T, b []byte) ([]Packet, *Reader, error) {
	t.Helper()
	r, err := Open(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	var ps []Packet
	for {
		var p Packet
		if err := r.Next(&p); err != nil {
			if err == io.EOF {
				err = nil
			}
			return ps, r, err
		}
		ps = append(ps, p)
	}
}

func TestReaderLinkTypes(t *testing.T) {
	v4 := ipv4("198.51.100.10", "192.0.2.1", 6, tcpHdr(40000, 1600, SYN), v4opt{})
	v6 := ipv6("2001:db8::10", "2001:db8::1", 17, udpHdr(40000, 1600, 0))
	cases := []struct {
		lt     layers.LinkType
		frames [][]byte
	}{
		{layers.LinkTypeEthernet, [][]byte{ether(0x0800, v4), ether(0x86dd, v6, 0x8100)}},
		{layers.LinkTypeLinuxSLL, [][]byte{sll(0x0800, v4), sll(0x86dd, v6)}},
		{layers.LinkTypeLinuxSLL2, [][]byte{sll2(0x0800, v4), sll2(0x86dd, v6)}},
		{layers.LinkTypeRaw, [][]byte{v4, v6}},
		{layers.LinkTypeNull, [][]byte{null(2, binary.LittleEndian, v4), null(30, binary.LittleEndian, v6)}},
		{layers.LinkTypeLoop, [][]byte{null(2, binary.BigEndian, v4), null(24, binary.BigEndian, v6)}},
		{layers.LinkType(239), [][]byte{nflog(2, v4), nflog(10, v6)}},
	}
	for _, tc := range cases {
		t.Run(LinkType(tc.lt).String(), func(t *testing.T) {
			ps, r, err := readAll(t, writePcap(t, false, tc.lt, tc.frames, []time.Duration{0, 1500 * time.Millisecond}))
			if err != nil {
				t.Fatal(err)
			}
			if r.LinkType() != LinkType(tc.lt) {
				t.Errorf("LinkType() = %v", r.LinkType())
			}
			if len(ps) != 2 {
				t.Fatalf("%d packets, want 2", len(ps))
			}
			for i, p := range ps {
				if p.Skipped != "" || p.DPort != 1600 || p.N != i+1 {
					t.Errorf("packet %d: %+v", i+1, p)
				}
			}
			if ps[1].Time != 1500*time.Millisecond || !ps[1].Src.Is6() {
				t.Errorf("second packet: %+v", ps[1])
			}
		})
	}
}

func TestReaderUnsupportedLinkType(t *testing.T) {
	b := writePcap(t, false, layers.LinkTypeIEEE80211Radio, [][]byte{{1, 2, 3}}, []time.Duration{0})
	_, _, err := readAll(t, b)
	if err == nil || !strings.Contains(err.Error(), "unsupported IEEE802_11_RADIO (127)") {
		t.Fatalf("got %v", err)
	}
}

func TestReaderTimestamps(t *testing.T) {
	frames := [][]byte{synFrom(1, 22), synFrom(2, 22), synFrom(3, 22)}
	at := []time.Duration{0, 1234567891 * time.Nanosecond, 90 * time.Minute}
	t.Run("nanosecond", func(t *testing.T) {
		ps, r, err := readAll(t, writePcap(t, true, layers.LinkTypeEthernet, frames, at))
		if err != nil {
			t.Fatal(err)
		}
		if ps[1].Time != at[1] || ps[2].Time != at[2] || r.Format() != "pcap, nanosecond" {
			t.Errorf("times %v %v, format %q", ps[1].Time, ps[2].Time, r.Format())
		}
	})
	t.Run("microsecond", func(t *testing.T) {
		ps, _, err := readAll(t, writePcap(t, false, layers.LinkTypeEthernet, frames, at))
		if err != nil {
			t.Fatal(err)
		}
		if ps[1].Time != 1234567*time.Microsecond {
			t.Errorf("time %v", ps[1].Time)
		}
	})
	t.Run("big-endian", func(t *testing.T) {
		b := bigEndianPcap(frames, []uint32{1000, 1001, 1003}, []uint32{999999, 0, 500000})
		ps, r, err := readAll(t, b)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 3 || ps[1].Time != time.Microsecond || ps[2].Time != 2*time.Second+500001*time.Microsecond || ps[0].DPort != 22 {
			t.Errorf("%d packets, times %v %v", len(ps), ps[1].Time, ps[2].Time)
		}
		if r.Format() != "pcap, big-endian" {
			t.Errorf("format %q", r.Format())
		}
	})
	t.Run("far future", func(t *testing.T) {
		// 2106-02-07, past the 32-bit seconds of pcap: only pcapng holds it.
		far := []time.Duration{0, time.Second, 80 * 365 * 24 * time.Hour}
		ps, _, err := readAll(t, writeNg(t, frames, far, []int{0, 0, 0}, layers.LinkTypeEthernet))
		if err != nil {
			t.Fatal(err)
		}
		if ps[2].Time != far[2] {
			t.Errorf("time %v, want %v", ps[2].Time, far[2])
		}
	})
	t.Run("backwards", func(t *testing.T) {
		ps, _, err := readAll(t, writePcap(t, false, layers.LinkTypeEthernet, frames, []time.Duration{time.Hour, 0, 2 * time.Hour}))
		if err != nil {
			t.Fatal(err)
		}
		if ps[1].Time != -time.Hour || ps[2].Time != time.Hour {
			t.Errorf("times %v %v", ps[1].Time, ps[2].Time)
		}
	})
}

// pcapHeader is a pcap file header in byte order o with the magic number
// magic: version 2.4, a snapshot length of 65535, Ethernet frames.
func pcapHeader(o binary.AppendByteOrder, magic uint32) []byte {
	b := o.AppendUint32(nil, magic)
	b = o.AppendUint16(b, 2)
	b = o.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)
	b = o.AppendUint32(b, 65535)
	return o.AppendUint32(b, 1)
}

// bigEndianPcap writes a big-endian microsecond pcap by hand: pcapgo
// writes only little-endian.
func bigEndianPcap(frames [][]byte, sec, usec []uint32) []byte {
	be := binary.BigEndian
	b := pcapHeader(be, magicPcapMicro)
	for i, f := range frames {
		b = be.AppendUint32(b, sec[i])
		b = be.AppendUint32(b, usec[i])
		b = be.AppendUint32(b, uint32(len(f)))
		b = be.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// writeNg writes a pcapng file whose interface i has link type lts[i].
func writeNg(t *testing.T, frames [][]byte, at []time.Duration, iface []int, lts ...layers.LinkType) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "if0", LinkType: lts[0], SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, lt := range lts[1:] {
		if _, err := w.AddInterface(pcapgo.NgInterface{Name: "if" + itoa(i+1), LinkType: lt, SnapLength: 65535}); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(at[i]), CaptureLength: len(f), Length: len(f), InterfaceIndex: iface[i]}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReaderPcapngInterfaces(t *testing.T) {
	v4 := ipv4("198.51.100.10", "192.0.2.1", 6, tcpHdr(40000, 22, SYN), v4opt{})
	frames := [][]byte{ether(0x0800, v4), sll2(0x0800, v4), v4, {1, 2, 3, 4}}
	ps, r, err := readAll(t, writeNg(t, frames, []time.Duration{0, 1, 2, 3}, []int{0, 1, 2, 3},
		layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw, layers.LinkTypeIEEE80211Radio))
	if err != nil {
		t.Fatal(err)
	}
	if r.Format() != "pcapng" || len(ps) != 4 {
		t.Fatalf("format %q, %d packets", r.Format(), len(ps))
	}
	for _, p := range ps[:3] {
		if p.Skipped != "" || p.DPort != 22 {
			t.Errorf("packet %d: %+v", p.N, p)
		}
	}
	if !strings.Contains(ps[3].Skipped, "unsupported IEEE802_11_RADIO") {
		t.Errorf("packet 4 on an 802.11 interface: %q", ps[3].Skipped)
	}
}

// TestReaderPcapngResolution reads interfaces of different timestamp
// resolutions: one in microseconds (no if_tsresol option), one in
// nanoseconds, one in 2^-10 seconds.
func TestReaderPcapngResolution(t *testing.T) {
	le := binary.LittleEndian
	block := func(typ uint32, body []byte) []byte {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		b := le.AppendUint32(nil, typ)
		b = le.AppendUint32(b, uint32(12+len(body)))
		b = append(b, body...)
		return le.AppendUint32(b, uint32(12+len(body)))
	}
	shb := block(0x0a0d0d0a, []byte{0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	idb := func(tsresol byte) []byte {
		body := []byte{1, 0, 0, 0, 0, 0, 1, 0}
		if tsresol != 0 {
			body = append(body, 9, 0, 1, 0, tsresol, 0, 0, 0)
		}
		return block(1, append(body, 0, 0, 0, 0))
	}
	epb := func(iface uint32, ts uint64, frame []byte) []byte {
		body := le.AppendUint32(nil, iface)
		body = le.AppendUint32(body, uint32(ts>>32))
		body = le.AppendUint32(body, uint32(ts))
		body = le.AppendUint32(body, uint32(len(frame)))
		body = le.AppendUint32(body, uint32(len(frame)))
		return block(6, append(body, frame...))
	}
	f := synFrom(1, 22)
	var b []byte
	b = append(b, shb...)
	b = append(b, idb(0)...)
	b = append(b, idb(9)...)
	b = append(b, idb(0x80|10)...)
	b = append(b, epb(0, 1_000_000_000_000, f)...)     // 1e6 s in µs
	b = append(b, epb(1, 1_000_002_000_000_000, f)...) // 1e6+2 s in ns
	b = append(b, epb(2, (1_000_003<<10)+512, f)...)   // 1e6+3.5 s in 2^-10 s
	ps, _, err := readAll(t, b)
	if err != nil {
		t.Fatal(err)
	}
	// pcapgo scales 2^-10 s by the integer 1e9/1024, a few hundred
	// nanoseconds short over a million seconds.
	if len(ps) != 3 || ps[1].Time != 2*time.Second || (ps[2].Time-3500*time.Millisecond).Abs() > time.Microsecond {
		t.Fatalf("%d packets: %+v", len(ps), ps)
	}
}

func TestReaderBrokenFiles(t *testing.T) {
	good := writePcap(t, false, layers.LinkTypeEthernet, [][]byte{synFrom(1, 22), synFrom(2, 22), synFrom(3, 22)}, []time.Duration{0, 1, 2})
	rec := 16 + len(synFrom(1, 22))
	ng := writeNg(t, [][]byte{synFrom(1, 22), synFrom(2, 22)}, []time.Duration{0, 1}, []int{0, 0}, layers.LinkTypeEthernet)
	withCaplen := func(n uint32) []byte {
		b := clone(good)
		binary.LittleEndian.PutUint32(b[24+rec+8:], n)
		return b
	}
	cases := []struct {
		name    string
		file    []byte
		packets int    // read before the error
		err     string // substring of the error
		offset  int64  // of the *Error, when packets > 0 or the error comes after Open
	}{
		{"empty", nil, 0, "empty file", -1},
		{"three bytes", good[:3], 0, "too short for a capture header (3 bytes)", -1},
		{"header cut", good[:20], 0, "pcap header", -1},
		{"unknown magic", []byte("hello, world! this is not a capture"), 0, "not a pcap or pcapng file (it starts with 68 65 6c 6c)", -1},
		{"header only", good[:24], 0, "", -1},
		{"cut inside the last record's data", good[:len(good)-5], 2, "packet 3 (record at byte offset " + itoa(24+2*rec) + "): the file ends inside this record", 24 + 2*int64(rec)},
		{"cut inside the last record's header", good[:24+2*rec+7], 2, "packet 3 (record at byte offset " + itoa(24+2*rec) + ")", 24 + 2*int64(rec)},
		{"caplen larger than the packet", withCaplen(70), 1, "packet 2 (record at byte offset " + itoa(24+rec) + "): capture length exceeds original packet length", 24 + int64(rec)},
		{"caplen of 4 GB", withCaplen(0xfffffff0), 1, "capture length exceeds snap length", 24 + int64(rec)},
		{"caplen 0", func() []byte {
			b := clone(good[:24+rec])
			b = append(b, make([]byte, 16)...)
			return b
		}(), 2, "", -1},
		{"pcapng cut", ng[:len(ng)-10], 1, "packet 2", -1},
		{"pcapng bad byte order", func() []byte { b := clone(ng); b[8] = 0; return b }(), 0, "pcapng section header", -1},
		{"pcapng unknown version only", func() []byte { b := clone(ng); b[12] = 2; return b }(), 0, "no pcapng section kwl can read: byte offset 0: pcapng section of unknown version 2.0 skipped", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps, r, err := readAll(t, tc.file)
			if len(ps) != tc.packets {
				t.Errorf("%d packets read, want %d", len(ps), tc.packets)
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if tc.offset >= 0 {
				var e *Error
				if !errors.As(err, &e) || e.Offset != tc.offset || e.N != tc.packets+1 {
					t.Errorf("error %#v, want *Error at offset %d", err, tc.offset)
				}
				var p Packet
				if again := r.Next(&p); again != err {
					t.Errorf("Next after an error: %v", again)
				}
			}
		})
	}
}

func TestReaderPcapngUnknownVersionWarns(t *testing.T) {
	a := writeNg(t, [][]byte{synFrom(1, 22)}, []time.Duration{0}, []int{0}, layers.LinkTypeEthernet)
	b := clone(a)
	b[12] = 2 // major version 2: skipped whole
	c := writeNg(t, [][]byte{synFrom(3, 22)}, []time.Duration{0}, []int{0}, layers.LinkTypeEthernet)
	file := append(append(clone(a), b...), c...)
	ps, r, err := readAll(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[1].Src.String() != "198.51.100.3" {
		t.Fatalf("%d packets: %+v", len(ps), ps)
	}
	if w := r.Warnings(); len(w) != 1 || w[0] != "byte offset "+itoa(len(a))+": pcapng section of unknown version 2.0 skipped" {
		t.Errorf("warnings %q", w)
	}
}

func TestReaderGzip(t *testing.T) {
	for _, name := range []string{"pcap", "pcapng"} {
		t.Run(name, func(t *testing.T) {
			plain := writePcap(t, false, layers.LinkTypeEthernet, [][]byte{synFrom(1, 22), synFrom(2, 80)}, []time.Duration{0, 1})
			if name == "pcapng" {
				plain = writeNg(t, [][]byte{synFrom(1, 22), synFrom(2, 80)}, []time.Duration{0, 1}, []int{0, 0}, layers.LinkTypeEthernet)
			}
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(plain)
			zw.Close()
			ps, r, err := readAll(t, z.Bytes())
			if err != nil || len(ps) != 2 || ps[1].DPort != 80 || !strings.HasSuffix(r.Format(), ", gzip") {
				t.Fatalf("%v, %d packets, %q", err, len(ps), r.Format())
			}
			// A cut stream: the packets before the cut, then an error.
			ps, _, err = readAll(t, z.Bytes()[:z.Len()-30])
			if err == nil {
				t.Errorf("no error for a cut gzip stream (%d packets)", len(ps))
			}
		})
	}
}

func TestReaderModifiedFormat(t *testing.T) {
	frames := [][]byte{synFrom(1, 22), synFrom(2, 1600)}
	le := binary.LittleEndian
	b := pcapHeader(le, magicPcapModified)
	for i, f := range frames {
		b = le.AppendUint32(b, 100+uint32(i))
		b = le.AppendUint32(b, 0)
		b = le.AppendUint32(b, uint32(len(f)))
		b = le.AppendUint32(b, uint32(len(f)))
		b = append(b, 2, 0, 0, 0, 8, 0, 0, 0) // ifindex, protocol, type, pad
		b = append(b, f...)
	}
	ps, r, err := readAll(t, b)
	if err != nil || len(ps) != 2 || ps[1].DPort != 1600 || ps[1].Time != time.Second || r.Format() != "pcap, modified" {
		t.Fatalf("%v: %+v %q", err, ps, r.Format())
	}
	_, _, err = readAll(t, b[:len(b)-3])
	var e *Error
	if !errors.As(err, &e) || e.N != 2 || e.Offset != int64(24+24+len(frames[0])) {
		t.Errorf("cut file: %v", err)
	}
}

// TestReaderAllocs pins that the steady state of reading and decoding
// allocates nothing per packet.
func TestReaderAllocs(t *testing.T) {
	frames := make([][]byte, 2000)
	at := make([]time.Duration, len(frames))
	for i := range frames {
		frames[i] = synFrom(byte(i), uint16(i))
		at[i] = time.Duration(i) * time.Millisecond
	}
	for _, name := range []string{"pcap", "pcapng"} {
		b := writePcap(t, false, layers.LinkTypeEthernet, frames, at)
		if name == "pcapng" {
			b = writeNg(t, frames, at, make([]int, len(frames)), layers.LinkTypeEthernet)
		}
		r, err := Open(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var p Packet
		r.Next(&p)
		if n := testing.AllocsPerRun(1000, func() { r.Next(&p) }); n != 0 {
			t.Errorf("%s: %v allocations per packet", name, n)
		}
	}
}
