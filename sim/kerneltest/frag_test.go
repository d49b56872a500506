//go:build linux

package kerneltest

import (
	"encoding/binary"
	"io"
	"net/netip"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
	"kwl.dev/kwl/sim/replay"
)

// fragPolicy is the seed's knock, alone.
const fragPolicy = "knock 1600 opens ssh for 60s\n"

// fragCut is the bytes [off, end) of a datagram's payload, sent as one
// fragment, with the more-fragments flag when more.
type fragCut struct {
	off, end int
	more     bool
}

// fragment4 cuts the IPv4 packet of an Ethernet frame (build's) into
// fragments, each a frame with its header checksum.
func fragment4(frame []byte, cuts []fragCut) [][]byte {
	eth, ip := frame[:14], frame[14:34]
	l4 := frame[34:]
	var out [][]byte
	for _, c := range cuts {
		h := append([]byte(nil), ip...)
		binary.BigEndian.PutUint16(h[2:], uint16(20+c.end-c.off))
		ff := uint16(c.off / 8)
		if c.more {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], ff)
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], ^fold(sumBytes(h)))
		out = append(out, append(append(append([]byte(nil), eth...), h...), l4[c.off:c.end]...))
	}
	return out
}

// fragment6 cuts the IPv6 packet of an Ethernet frame into fragments
// with a fragment header of identification id.
func fragment6(frame []byte, cuts []fragCut, id uint32) [][]byte {
	eth, ip := frame[:14], frame[14:54]
	l4 := frame[54:]
	var out [][]byte
	for _, c := range cuts {
		h := append([]byte(nil), ip...)
		binary.BigEndian.PutUint16(h[4:], uint16(8+c.end-c.off))
		h[6] = 44
		fh := make([]byte, 8)
		fh[0] = ip[6]
		v := uint16(c.off)
		if c.more {
			v |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], v)
		binary.BigEndian.PutUint32(fh[4:], id)
		out = append(out, append(append(append(append([]byte(nil), eth...), h...), fh...), l4[c.off:c.end]...))
	}
	return out
}

// withDestOpts puts n destination options headers (each 8 bytes, one
// PadN option) between the IPv6 header of a frame and its transport
// header.
func withDestOpts(frame []byte, n int) []byte {
	eth, ip := frame[:14], append([]byte(nil), frame[14:54]...)
	l4 := frame[54:]
	next := ip[6]
	ip[6] = 60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)+8*n))
	out := append(append([]byte(nil), eth...), ip...)
	for i := range n {
		h := []byte{60, 0, 1, 4, 0, 0, 0, 0}
		if i == n-1 {
			h[0] = next
		}
		out = append(out, h...)
	}
	return append(out, l4...)
}

// TestFragments sends crafted knocks through the firewall of each
// backend: an IPv6 SYN behind 17 extension headers, an IPv4 SYN whose
// first fragment holds only 8 bytes of TCP, lone first fragments whose
// rest never comes, an IPv6 SYN in two fragments, overlapping fragments.
// Then a connection attempt to ssh says whether the door opened. The
// firewall's capture, read back by sim/capture (which reassembles), is
// replayed as kwl sim replays it (sim/replay) through the simulator of
// the same ruleset, and its verdict on that attempt must be the kernel's.
func TestFragments(t *testing.T) {
	needRoot(t)
	pol, diags := lang.Load("frag.kwl", []byte(fragPolicy))
	if diags.HasErrors() {
		t.Fatalf("%v", diags)
	}
	src4 := netip.MustParseAddr("198.51.100.10")
	src6 := netip.MustParseAddr("2001:db8:1::10")
	knock := func(src netip.Addr, tag uint32, payload int) []byte {
		dst := FW4
		if src.Is6() {
			dst = FW6
		}
		return build(pkt{src: src, dst: dst, proto: lang.TCP, sport: 40000 + uint16(tag), dport: 1600, tag: tag, seq: 1, flags: flagSYN, payload: make([]byte, payload)})
	}
	cases := []struct {
		name   string
		src    netip.Addr
		frames [][]byte
		opens  bool
	}{
		{"ipv6-17-extension-headers", src6, [][]byte{withDestOpts(knock(src6, 0x701, 0), 17)}, true},
		{"ipv4-8-byte-first-fragment", src4, fragment4(knock(src4, 0x702, 0), []fragCut{{0, 8, true}, {8, 20, false}}), true},
		{"ipv4-rest-first", src4, fragment4(knock(src4, 0x703, 0), []fragCut{{8, 20, false}, {0, 8, true}}), true},
		// A whole TCP header in a first fragment that has no rest.
		{"ipv4-lone-first-fragment", src4, fragment4(knock(src4, 0x704, 12), []fragCut{{0, 24, true}}), false},
		// The second fragment overlaps the first: the datagram is
		// discarded.
		{"ipv4-overlap", src4, fragment4(knock(src4, 0x705, 12), []fragCut{{0, 24, true}, {16, 32, false}}), false},
		{"ipv6-two-fragments", src6, fragment6(knock(src6, 0x706, 12), []fragCut{{0, 24, true}, {24, 32, false}}, 0x706), true},
		{"ipv6-lone-first-fragment", src6, fragment6(knock(src6, 0x707, 12), []fragCut{{0, 24, true}}, 0x707), false},
	}
	for _, b := range Backends {
		tg, err := target(b, pol, 0, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			t.Run(b+"/"+tc.name, func(t *testing.T) {
				kernel, simulated := fragRun(t, tg, tc.src, tc.frames)
				if kernel != tc.opens {
					t.Errorf("kernel: door opened %v, want %v", kernel, tc.opens)
				}
				if simulated != kernel {
					t.Errorf("kernel and simulator disagree: kernel opened the door %v, kwl sim %v", kernel, simulated)
				}
			})
		}
	}
}

// fragRun sends frames from src, then a connection attempt to ssh, and
// reports whether the kernel let the attempt in and whether kwl sim's
// replay of the firewall's capture did.
func fragRun(t *testing.T, tg Target, src netip.Addr, frames [][]byte) (kernel, simulated bool) {
	l, err := NewLab()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := tg.Load(l); err != nil {
		t.Fatal(err)
	}
	if err := l.Neighbours([]netip.Addr{src}); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if _, err := l.wire.send(f); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	out, err := l.Replay(Resolve([]Packet{{At: 50 * time.Millisecond, Src: src, SPort: 41000, Port: lang.Port{Proto: lang.TCP, Num: 22}, Kind: lang.New}}))
	if err != nil {
		t.Fatal(err)
	}
	kernel = out[0].Passed

	rd, err := openFrames(l.Capture())
	if err != nil {
		t.Fatal(err)
	}
	sm := tg.Model.(*simModel)
	rp, err := sm.replay(false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	err = rp.Run(rd, nil, func(p *capture.Packet, o *replay.Outcome) {
		if o.Skipped != "" {
			t.Logf("capture packet %d: skipped: %s", p.N, o.Skipped)
			return
		}
		t.Logf("capture packet %d: %v %v:%d > %v:%d flags %#x (%d fragments): %v", p.N, p.Proto, p.Src, p.SPort, p.Dst, p.DPort, p.Flags, p.Frags, o.Verdict)
		if p.Src == src && p.SPort == 41000 && p.DPort == 22 && p.Flags == capture.SYN {
			found = true
			simulated = o.Verdict == lang.Accept
		}
	})
	if err != io.EOF {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("the connection attempt to ssh is not in the firewall's capture")
	}
	return kernel, simulated
}
