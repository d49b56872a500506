//go:build linux

package kerneltest

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
)

// newLab returns a Lab removed when the test ends, and checks then that
// none of its namespaces is left.
func newLab(t *testing.T) *Lab {
	t.Helper()
	needRoot(t)
	l, err := NewLab()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		names := []string{l.FW.Name, l.Client.Name}
		if l.Inside != nil {
			names = append(names, l.Inside.Name)
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		checkGone(t, names...)
	})
	return l
}

var (
	c1 = netip.MustParseAddr("198.51.100.10")
	c2 = netip.MustParseAddr("198.51.100.20")
	c6 = netip.MustParseAddr("2001:db8:51::10")
)

func tcp(n uint16) lang.Port { return lang.Port{Proto: lang.TCP, Num: n} }
func udp(n uint16) lang.Port { return lang.Port{Proto: lang.UDP, Num: n} }

// TestLabProbe checks the harness itself against a hand-written ruleset:
// what it drops is reported dropped, the rest passed, TCP and UDP, both
// families, new and established packets.
func TestLabProbe(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	if err := l.LoadNft(`table inet t {
	set u {
		type ipv4_addr
		flags dynamic
	}
	chain input {
		type filter hook input priority 0; policy accept;
		ct state established accept
		# What reaches here is not established: an ACK would be a bug of
		# the harness (the handshake did not complete).
		tcp flags & (syn | ack) == ack drop
		udp dport 53 ct state new ip saddr @u drop
		udp dport 53 ct state new add @u { ip saddr }
		tcp dport 23 drop
		udp dport 5353 drop
		ip6 saddr 2001:db8:51::10 tcp dport 22 drop
	}
}
`); err != nil {
		t.Fatal(err)
	}
	pkts := Resolve([]Packet{
		{At: 0, Src: c1, Port: tcp(22)},
		{At: 50 * time.Millisecond, Src: c1, Port: tcp(23)},
		{At: 100 * time.Millisecond, Src: c1, Port: tcp(22), Kind: lang.Data},
		{At: 150 * time.Millisecond, Src: c2, Port: udp(5353)},
		{At: 200 * time.Millisecond, Src: c2, Port: udp(53)},
		{At: 250 * time.Millisecond, Src: c2, Port: udp(53), Kind: lang.Data},
		{At: 300 * time.Millisecond, Src: c6, Port: tcp(22)},
		{At: 350 * time.Millisecond, Src: c6, Port: tcp(80)},
		{At: 400 * time.Millisecond, Src: c6, Port: tcp(80), Kind: lang.Data},
		{At: 450 * time.Millisecond, Src: c6, Port: tcp(23), Kind: lang.Data},
	})
	out, err := l.Replay(pkts)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, false, true, true, false, true, true, false}
	for i, o := range out {
		if o.Passed != want[i] {
			t.Errorf("packet %d %s:%d -> %s kind %d: passed %v, want %v", i+1, o.Src, o.SPort, o.Port, o.Kind, o.Passed, want[i])
		}
		if o.Port.Proto == lang.TCP && o.Kind == lang.New && o.SynAck != o.Passed {
			t.Errorf("packet %d: SYN-ACK %v but passed %v", i+1, o.SynAck, o.Passed)
		}
		t.Logf("packet %d sent at %v (planned %v) passed %v", i+1, o.Sent, o.At, o.Passed)
	}
	// The firewall's capture holds every packet sent, dropped or not.
	got := map[uint32]bool{}
	for _, f := range l.Capture() {
		if p, ok := parseFrame(f.Data); ok && !f.Out && (p.proto == lang.TCP || p.proto == lang.UDP) {
			got[p.tag] = true
		}
	}
	for _, o := range out {
		if !got[o.Tag] {
			t.Errorf("packet %d missing from the capture", o.Tag)
		}
	}
	if err := WritePcap(filepath.Join(t.TempDir(), "fw.pcap"), l.Capture()); err != nil {
		t.Error(err)
	}
}

// TestLabForward checks the inside host: a DNAT'ed service is answered
// from behind the firewall, and the probe's forward chain records what
// the forward hook let through.
func TestLabForward(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	inside := netip.MustParseAddr("192.168.1.5")
	if err := l.LoadNft(`table inet t {
	chain prechain {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 198.51.100.1 tcp dport 22 dnat ip to 192.168.1.5
	}
	chain fwdchain {
		type filter hook forward priority 0; policy accept;
		ct state established accept
		tcp flags & (syn | ack) == ack drop
		ip saddr 198.51.100.20 meta l4proto tcp ct original proto-dst 22 drop
	}
}
`); err != nil {
		t.Fatal(err)
	}
	if err := l.AddInside(inside, []lang.Port{tcp(22)}); err != nil {
		t.Fatal(err)
	}
	out, err := l.Replay(Resolve(Steps(`
		0s     198.51.100.10 22
		100ms  198.51.100.10 22 data
		200ms  198.51.100.20 22
		300ms  198.51.100.10 80
	`)))
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, false, true}
	for i, o := range out {
		if o.Passed != want[i] {
			t.Errorf("packet %d (%s): passed %v, want %v", i+1, describe(o.Packet, o.Sent), o.Passed, want[i])
		}
	}
	if !out[0].SynAck || out[2].SynAck {
		t.Errorf("SYN-ACKs: %v %v, want true false", out[0].SynAck, out[2].SynAck)
	}
}
