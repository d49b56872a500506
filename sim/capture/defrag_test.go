package capture

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
)

// frag4 is an IPv4 fragment of a datagram whose payload is dgram: the
// bytes [off, end) of it, with the more-fragments flag when more.
type frag4 struct {
	at       time.Duration
	off, end int
	more     bool
	id       uint16
	src      string
	tos      uint8
}

func (f frag4) frame(dgram []byte) []byte {
	src := f.src
	if src == "" {
		src = "198.51.100.10"
	}
	b := ipv4(src, "192.0.2.1", 6, dgram[f.off:f.end], v4opt{fragOff: uint16(f.off), moreFrag: f.more})
	binary.BigEndian.PutUint16(b[4:], f.id)
	b[1] = f.tos
	return b
}

// frag6 is an IPv6 fragment, as frag4.
type frag6 struct {
	at       time.Duration
	off, end int
	more     bool
	id       uint32
	exts     []ext // before the fragment header
}

func (f frag6) frame(next uint8, dgram []byte) []byte {
	fh := make([]byte, 8)
	fh[0] = next
	v := uint16(f.off)
	if f.more {
		v |= 1
	}
	binary.BigEndian.PutUint16(fh[2:], v)
	binary.BigEndian.PutUint32(fh[4:], f.id)
	payload := append(fh, dgram[f.off:f.end]...)
	return ipv6("2001:db8::10", "2001:db8::1", ipv6Fragment, payload, f.exts...)
}

func synSegment(dport uint16, data int) []byte {
	return append(tcpHdr(40000, dport, SYN), make([]byte, data)...)
}

// checkFrags decodes frames, fragments sent at the times at, one by one,
// and checks each one's skip reason (skips, "" for the one that completes
// the datagram, which must be want) and the statistics at the end.
func checkFrags(t *testing.T, frames [][]byte, at []time.Duration, skips []string, want Packet, stats FragStats) {
	t.Helper()
	var d Defrag
	for i, frame := range frames {
		p := Packet{N: i + 1, Time: at[i]}
		d.Decode(LinkRaw, frame, &p)
		if skips[i] == "" {
			if p.Skipped != "" {
				t.Fatalf("fragment %d: skipped %q, want the datagram", i+1, p.Skipped)
			}
			want.N, want.Time = i+1, at[i]
			if p != want {
				t.Errorf("got  %+v\nwant %+v", p, want)
			}
		} else if !strings.Contains(p.Skipped, skips[i]) {
			t.Errorf("fragment %d: Skipped = %q, want it to contain %q", i+1, p.Skipped, skips[i])
		}
	}
	if s := d.Stats(); s != stats {
		t.Errorf("stats %+v, want %+v", s, stats)
	}
}

func TestDefrag4(t *testing.T) {
	seg := synSegment(1600, 40) // 60 bytes of TCP
	whole := func(frags int) Packet {
		return Packet{Src: netip.MustParseAddr("198.51.100.10"), Dst: netip.MustParseAddr("192.0.2.1"),
			Proto: lang.TCP, SPort: 40000, DPort: 1600, Flags: SYN, Len: 80, Frags: uint16(frags)}
	}
	cases := []struct {
		name  string
		frags []frag4
		want  Packet   // the last fragment's packet, when it is evaluated
		skips []string // each fragment's skip reason, "" for the evaluated one
		stats FragStats
	}{
		{"8 bytes of TCP, then the rest", []frag4{{off: 0, end: 8, more: true}, {at: time.Second, off: 8, end: 60}},
			whole(2), []string{"held for reassembly", ""}, FragStats{Fragments: 2, Reassembled: 1}},
		{"out of order", []frag4{{off: 8, end: 60}, {off: 0, end: 8, more: true}},
			whole(2), []string{"held", ""}, FragStats{Fragments: 2, Reassembled: 1}},
		{"three, middle last", []frag4{{off: 0, end: 16, more: true}, {off: 32, end: 60}, {off: 16, end: 32, more: true}},
			whole(3), []string{"held", "held", ""}, FragStats{Fragments: 3, Reassembled: 1}},
		{"a lone first fragment", []frag4{{off: 0, end: 24, more: true}},
			Packet{}, []string{"held"}, FragStats{Fragments: 1, Pending: 1}},
		{"a lone later fragment", []frag4{{off: 24, end: 60}},
			Packet{}, []string{"held"}, FragStats{Fragments: 1, Pending: 1}},
		{"the rest after the timeout", []frag4{{off: 0, end: 8, more: true}, {at: 30 * time.Second, off: 8, end: 60}},
			Packet{}, []string{"held", "held"}, FragStats{Fragments: 2, Expired: 1, Pending: 1}},
		{"the rest just before the timeout", []frag4{{off: 0, end: 8, more: true}, {at: 30*time.Second - 1, off: 8, end: 60}},
			whole(2), []string{"held", ""}, FragStats{Fragments: 2, Reassembled: 1}},
		{"the timer is not restarted", []frag4{{off: 0, end: 8, more: true}, {at: 20 * time.Second, off: 16, end: 24, more: true}, {at: 31 * time.Second, off: 8, end: 16, more: true}, {at: 32 * time.Second, off: 24, end: 60}},
			Packet{}, []string{"held", "held", "held", "held"}, FragStats{Fragments: 4, Expired: 1, Pending: 1}},
		{"a duplicate", []frag4{{off: 0, end: 8, more: true}, {off: 0, end: 8, more: true}, {off: 8, end: 60}},
			whole(2), []string{"held", "duplicate", ""}, FragStats{Fragments: 3, Reassembled: 1}},
		{"inside a run is a duplicate", []frag4{{off: 0, end: 16, more: true}, {off: 16, end: 32, more: true}, {off: 8, end: 24, more: true}, {off: 32, end: 60}},
			whole(3), []string{"held", "held", "duplicate", ""}, FragStats{Fragments: 4, Reassembled: 1}},
		{"across two runs is an overlap", []frag4{{off: 0, end: 8, more: true}, {off: 24, end: 60}, {off: 16, end: 24, more: true}, {off: 8, end: 24, more: true}},
			Packet{}, []string{"held", "held", "held", "overlapping"}, FragStats{Fragments: 4, Discarded: 1}},
		{"an overlap discards the datagram", []frag4{{off: 0, end: 16, more: true}, {off: 8, end: 24, more: true}, {off: 24, end: 60}},
			Packet{}, []string{"held", "overlapping", "held"}, FragStats{Fragments: 3, Discarded: 1, Pending: 1}},
		{"two last fragments of different ends", []frag4{{off: 24, end: 60}, {off: 24, end: 56}},
			Packet{}, []string{"held", "past its datagram's end"}, FragStats{Fragments: 2, Discarded: 1}},
		{"a fragment past the last one", []frag4{{off: 24, end: 40}, {off: 40, end: 56, more: true}},
			Packet{}, []string{"held", "past its datagram's end"}, FragStats{Fragments: 2, Discarded: 1}},
		{"ECN marks mixed", []frag4{{off: 0, end: 8, more: true, tos: 0}, {off: 8, end: 60, tos: 2}},
			Packet{}, []string{"held", "ECN"}, FragStats{Fragments: 2, Discarded: 1}},
		{"other datagrams' ids", []frag4{{off: 0, end: 8, more: true, id: 1}, {off: 8, end: 60, id: 2}},
			Packet{}, []string{"held", "held"}, FragStats{Fragments: 2, Pending: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var frames [][]byte
			var at []time.Duration
			for _, f := range tc.frags {
				frames, at = append(frames, f.frame(seg)), append(at, f.at)
			}
			checkFrags(t, frames, at, tc.skips, tc.want, tc.stats)
		})
	}
}

// TestDefrag4MaxDist: a source that sends more than ipfrag_max_dist
// fragments of other datagrams between two of one datagram starts that
// one over.
func TestDefrag4MaxDist(t *testing.T) {
	seg := synSegment(1600, 40)
	for _, others := range []int{fragMaxDist - 1, fragMaxDist} {
		var d Defrag
		var p Packet
		n := 0
		send := func(f frag4) {
			n++
			p = Packet{N: n}
			d.Decode(LinkRaw, f.frame(seg), &p)
		}
		send(frag4{off: 0, end: 8, more: true, id: 1})
		for i := range others {
			send(frag4{off: 0, end: 8, more: true, id: uint16(100 + i)})
		}
		send(frag4{off: 8, end: 60, id: 1})
		if done := p.Skipped == ""; done != (others < fragMaxDist) {
			t.Errorf("%d fragments in between: datagram complete %v (%q)", others, done, p.Skipped)
		}
	}
}

func TestDefrag6(t *testing.T) {
	seg := synSegment(1600, 40)
	whole := func(frags, hdrs int) Packet {
		return Packet{Src: netip.MustParseAddr("2001:db8::10"), Dst: netip.MustParseAddr("2001:db8::1"),
			Proto: lang.TCP, SPort: 40000, DPort: 1600, Flags: SYN, Len: 40 + hdrs + 60, Frags: uint16(frags)}
	}
	cases := []struct {
		name  string
		frags []frag6
		want  Packet
		skips []string
		stats FragStats
	}{
		{"in two", []frag6{{off: 0, end: 24, more: true}, {off: 24, end: 60}},
			whole(2, 0), []string{"held", ""}, FragStats{Fragments: 2, Reassembled: 1}},
		{"after a hop-by-hop header", []frag6{{off: 0, end: 24, more: true, exts: []ext{{typ: ipv6HopByHop, body: 8}}}, {off: 24, end: 60, exts: []ext{{typ: ipv6HopByHop, body: 8}}}},
			whole(2, 8), []string{"held", ""}, FragStats{Fragments: 2, Reassembled: 1}},
		{"a lone first fragment", []frag6{{off: 0, end: 24, more: true}},
			Packet{}, []string{"held"}, FragStats{Fragments: 1, Pending: 1}},
		{"the rest after 60 s", []frag6{{off: 0, end: 24, more: true}, {at: 60 * time.Second, off: 24, end: 60}},
			Packet{}, []string{"held", "held"}, FragStats{Fragments: 2, Expired: 1, Pending: 1}},
		{"the rest after 59 s", []frag6{{off: 0, end: 24, more: true}, {at: 59 * time.Second, off: 24, end: 60}},
			whole(2, 0), []string{"held", ""}, FragStats{Fragments: 2, Reassembled: 1}},
		// RFC 8200 4.5: not queued, the fragment goes on as it is and
		// its TCP header is cut.
		{"8 bytes of TCP in the first fragment", []frag6{{off: 0, end: 8, more: true}, {off: 8, end: 60}},
			Packet{}, []string{"truncated TCP header", "held"}, FragStats{Fragments: 1, Pending: 1}},
		// A length that is not a multiple of 8 ends the datagram; the
		// fragment goes on as it is: a first one is a whole SYN to the
		// rules.
		{"a first fragment of 30 bytes", []frag6{{off: 0, end: 30, more: true}},
			with6(whole(0, 8), func(p *Packet) { p.Len = 40 + 8 + 30 }), []string{""}, FragStats{Fragments: 1, Discarded: 1}},
		{"an overlap", []frag6{{off: 0, end: 24, more: true}, {off: 16, end: 32, more: true}, {off: 32, end: 60}},
			Packet{}, []string{"held", "overlapping", "held"}, FragStats{Fragments: 3, Discarded: 1, Pending: 1}},
		// IPv6 drops a fragment that contradicts the end and keeps the
		// datagram.
		{"two last fragments of different ends", []frag6{{off: 24, end: 60}, {off: 24, end: 56}, {off: 0, end: 24, more: true}},
			whole(2, 0), []string{"held", "past its datagram's end", ""}, FragStats{Fragments: 3, Reassembled: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var frames [][]byte
			var at []time.Duration
			for _, f := range tc.frags {
				frames, at = append(frames, f.frame(6, seg)), append(at, f.at)
			}
			checkFrags(t, frames, at, tc.skips, tc.want, tc.stats)
		})
	}
}

func with6(p Packet, f func(*Packet)) Packet { f(&p); return p }

// TestDefragExtensionHeadersAfterFragment: the headers after the
// fragment header are walked in the reassembled datagram.
func TestDefragExtensionHeadersAfterFragment(t *testing.T) {
	var dgram []byte
	for i := range 20 {
		h := make([]byte, 8)
		h[0] = ipv6DestOpts
		if i == 19 {
			h[0] = 6
		}
		dgram = append(dgram, h...)
	}
	dgram = append(dgram, synSegment(1600, 4)...) // 160 + 24 bytes
	var d Defrag
	var p Packet
	d.Decode(LinkRaw, frag6{off: 0, end: 96, more: true}.frame(ipv6DestOpts, dgram), &p)
	if !strings.Contains(p.Skipped, "held") {
		t.Fatalf("first fragment: %q", p.Skipped)
	}
	d.Decode(LinkRaw, frag6{off: 96, end: len(dgram)}.frame(ipv6DestOpts, dgram), &p)
	if p.Skipped != "" || p.Proto != lang.TCP || p.DPort != 1600 || p.Flags != SYN || p.Len != 40+len(dgram) {
		t.Errorf("reassembled: %+v", p)
	}
}

// TestDefragFrameAsItIs: Decode, without a Defrag, takes a first
// fragment as it is.
func TestDefragFrameAsItIs(t *testing.T) {
	seg := synSegment(1600, 40)
	var p Packet
	Decode(LinkRaw, frag4{off: 0, end: 8, more: true}.frame(seg), &p)
	if !strings.Contains(p.Skipped, "truncated TCP header") {
		t.Errorf("8-byte first fragment: %q", p.Skipped)
	}
	Decode(LinkRaw, frag4{off: 0, end: 24, more: true}.frame(seg), &p)
	if p.Skipped != "" || p.DPort != 1600 {
		t.Errorf("24-byte first fragment: %+v", p)
	}
}

// TestDefragAllocs: an unfragmented packet costs the reassembly nothing.
func TestDefragAllocs(t *testing.T) {
	var d Defrag
	var p Packet
	f := ipv4("198.51.100.10", "192.0.2.1", 6, tcpHdr(1, 22, SYN), v4opt{})
	if n := testing.AllocsPerRun(100, func() { d.Decode(LinkRaw, f, &p) }); n != 0 {
		t.Errorf("%v allocations per packet", n)
	}
}
