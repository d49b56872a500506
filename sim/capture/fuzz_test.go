package capture

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// FuzzReader reads whole files: no input may panic, hang, or make the
// reader allocate in proportion to a length it has not checked.
//
//	go test -fuzz=FuzzReader -fuzztime=5m ./sim/capture
func FuzzReader(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil && len(b) < 16<<10 {
			f.Add(b)
		}
	}
	t := &testing.T{}
	f.Add(writePcap(t, true, layers.LinkTypeLinuxSLL2, [][]byte{sll2(0x0800, ipv4("1.2.3.4", "5.6.7.8", 6, tcpHdr(1, 2, SYN), v4opt{}))}, []time.Duration{0}))
	f.Add(writeNg(t, [][]byte{synFrom(1, 22), {1, 2}}, []time.Duration{0, 1}, []int{0, 1}, layers.LinkTypeEthernet, layers.LinkTypeRaw))
	f.Add(bigEndianPcap([][]byte{synFrom(1, 22)}, []uint32{1}, []uint32{2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Open(bytes.NewReader(b))
		if err != nil {
			return
		}
		var p Packet
		for i := 0; ; i++ {
			if err := r.Next(&p); err != nil {
				break
			}
			if p.N != i+1 {
				t.Fatalf("packet %d numbered %d", i+1, p.N)
			}
			if p.Skipped == "" && (!p.Src.IsValid() || !p.Dst.IsValid()) {
				t.Fatalf("packet %d without addresses and without a reason: %+v", p.N, p)
			}
		}
	})
}

// FuzzDecode decodes one frame of each supported link type.
//
//	go test -fuzz=FuzzDecode -fuzztime=5m ./sim/capture
func FuzzDecode(f *testing.F) {
	v4 := ipv4("198.51.100.10", "192.0.2.1", 6, tcpHdr(40000, 22, SYN), v4opt{options: 4})
	v6 := ipv6("2001:db8::10", "2001:db8::1", 17, udpHdr(1, 53, 3), ext{typ: ipv6HopByHop, body: 8}, ext{typ: ipv6Fragment, body: 8})
	seeds := map[LinkType][]byte{
		LinkEthernet: ether(0x0800, v4, 0x88a8, 0x8100),
		LinkLinuxSLL: sll(0x86dd, v6),
		LinkSLL2:     sll2(0x0800, v4),
		LinkRaw:      v6,
		LinkIPv4:     v4,
		LinkIPv6:     v6,
		LinkNull:     null(30, binary.LittleEndian, v6),
		LinkLoop:     null(2, binary.BigEndian, v4),
		LinkNFLog:    nflog(2, v4),
	}
	for lt, frame := range seeds {
		f.Add(uint16(lt), frame)
	}
	seg := synSegment(1600, 40)
	f.Add(uint16(LinkRaw), frag4{off: 0, end: 8, more: true}.frame(seg))
	f.Add(uint16(LinkRaw), frag4{off: 8, end: 60}.frame(seg))
	f.Add(uint16(LinkRaw), frag6{off: 0, end: 24, more: true}.frame(6, seg))
	f.Add(uint16(LinkRaw), frag6{off: 24, end: 60, exts: []ext{{typ: ipv6HopByHop, body: 8}}}.frame(6, seg))
	check := func(t *testing.T, lt uint16, p *Packet) {
		if p.Skipped == "" && LinkType(lt).Supported() && (!p.Src.IsValid() || !p.Dst.IsValid()) {
			t.Fatalf("decoded without addresses and without a reason: %+v", p)
		}
		if p.Proto != 6 && p.Proto != 17 && p.Proto != 136 && (p.SPort != 0 || p.DPort != 0) {
			t.Fatalf("ports on protocol %d", p.Proto)
		}
	}
	// The frame alone, then through a Defrag that has seen the seed
	// fragments, twice, so that it joins, completes, duplicates or
	// overlaps their datagrams.
	var first, rest []byte = frag4{off: 0, end: 8, more: true}.frame(seg), frag6{off: 0, end: 24, more: true}.frame(6, seg)
	f.Fuzz(func(t *testing.T, lt uint16, frame []byte) {
		var p Packet
		Decode(LinkType(lt), frame, &p)
		check(t, lt, &p)
		var d Defrag
		d.Decode(LinkRaw, first, &p)
		d.Decode(LinkRaw, rest, &p)
		for i := range 2 {
			p = Packet{N: i + 1, Time: time.Duration(i) * time.Second}
			d.Decode(LinkType(lt), frame, &p)
			check(t, lt, &p)
		}
		if s := d.Stats(); s.Fragments < s.Reassembled || s.Pending > s.Fragments {
			t.Fatalf("stats %+v", s)
		}
	})
}
