package replay

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// byPortEngine is a stand-in for a second policy: tcp/1600 is dropped,
// a SYN to tcp/22 is accepted but from the sources in drop or reject.
type byPortEngine struct{ drop, reject netip.Addr }

func (e *byPortEngine) Eval(p *capture.Packet) Result {
	switch {
	case p.DPort == 1600:
		return Result{Verdict: lang.Drop, Stmt: 1}
	case p.DPort == 22 && p.Src == e.drop:
		return Result{Verdict: lang.Drop, Stmt: 2}
	case p.DPort == 22 && p.Src == e.reject:
		return Result{Verdict: lang.Reject, Stmt: 2}
	}
	return Result{Verdict: lang.Accept, Stmt: 2}
}

// synPcap writes a pcap of TCP SYNs to 192.0.2.1, one per packet a
// second apart: from src[i] port 40000+i to dport[i].
func synPcap(t *testing.T, src []string, dport []uint16) *capture.Reader {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range src {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(src[i]).To4(), DstIP: net.IPv4(192, 0, 2, 1).To4()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: layers.TCPPort(dport[i]), SYN: true, Window: 1024}
		tcp.SetNetworkLayerForChecksum(ip)
		sb := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
			t.Fatal(err)
		}
		b := sb.Bytes()
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Second), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	r, err := capture.Open(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCompare replays one capture through the knock policy and one that
// needs no knock: the packets whose verdict differs, and per source the
// access gained, lost, or changed between drop and reject.
func TestCompare(t *testing.T) {
	c1, c3, c4 := "198.51.100.1", "198.51.100.3", "198.51.100.4"
	r := synPcap(t,
		[]string{c1, c4, c4, c3, c1},
		[]uint16{22, 1600, 22, 22, 22})
	pol := stubPolicy()
	old := New(pol, &knockEngine{open: map[netip.Addr]bool{}})
	new := New(pol, &byPortEngine{drop: netip.MustParseAddr(c4), reject: netip.MustParseAddr(c3)})
	var seen, differ []int
	cmp, err := Compare(r, old, new, func(p *capture.Packet, o1, o2 *Outcome) {
		seen = append(seen, p.N)
		if Differs(o1, o2) {
			differ = append(differ, p.N)
		}
	})
	if err != io.EOF {
		t.Fatalf("Compare: %v, want io.EOF", err)
	}
	if len(seen) != 5 {
		t.Errorf("each saw packets %v, want 5", seen)
	}
	if want := []int{1, 3, 4, 5}; !slices.Equal(differ, want) {
		t.Errorf("packets that differ %v, want %v", differ, want)
	}
	if cmp.Differ != 4 {
		t.Errorf("Differ %d, want 4", cmp.Differ)
	}
	want := map[string]Access{c1: {Gained: 2}, c4: {Lost: 1}, c3: {Other: 1}}
	if len(cmp.Sources) != len(want) {
		t.Errorf("%d sources differ, want %d", len(cmp.Sources), len(want))
	}
	for s, w := range want {
		if a := cmp.Sources[netip.MustParseAddr(s)]; a == nil || *a != w {
			t.Errorf("access of %s: %+v, want %+v", s, a, w)
		}
	}
	if old.Packets != 5 || new.Packets != 5 {
		t.Errorf("counted %d and %d packets, want 5", old.Packets, new.Packets)
	}
}

// TestDiffers: a packet differs when both replays evaluated it with
// different verdicts.
func TestDiffers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o1, o2 Outcome
		want   bool
	}{
		{"same verdict", Outcome{Verdict: lang.Drop}, Outcome{Verdict: lang.Drop}, false},
		{"accept and drop", Outcome{Verdict: lang.Accept}, Outcome{Verdict: lang.Drop}, true},
		{"drop and reject", Outcome{Verdict: lang.Drop}, Outcome{Verdict: lang.Reject}, true},
		{"skipped by one", Outcome{Skipped: "sent by the host"}, Outcome{Verdict: lang.Drop}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Differs(&tc.o1, &tc.o2); got != tc.want {
				t.Errorf("Differs = %v, want %v", got, tc.want)
			}
		})
	}
}
