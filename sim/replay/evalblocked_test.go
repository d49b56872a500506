package replay

import (
	"net/netip"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// TestEvalBlocked replays a refused connection whose later packets were
// sent anyway: each is evaluated and names the blocked flow.
func TestEvalBlocked(t *testing.T) {
	client, server := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("192.0.2.1")
	pkt := func(n int, at time.Duration, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags capture.TCPFlags) capture.Packet {
		return capture.Packet{N: n, Time: at, Src: src, SPort: sport, Dst: dst, DPort: dport, Proto: lang.TCP, Flags: flags}
	}
	ps := []capture.Packet{
		pkt(1, 0, client, 40000, server, 22, capture.SYN),                       // dropped: no knock
		pkt(2, 100*time.Millisecond, client, 40000, server, 22, capture.ACK),    // sent anyway: the stand-in accepts it
		pkt(3, time.Second, client, 40001, server, 1600, capture.SYN),           // knock
		pkt(4, 1100*time.Millisecond, client, 40001, server, 1600, capture.ACK), // evaluated: dropped again
		pkt(5, 1500*time.Millisecond, client, 40000, server, 22, capture.ACK),   // accepted before: of no blocked flow
	}
	want := []Outcome{
		{Evaluated: true, Verdict: lang.Drop, Stmt: 2},
		{Evaluated: true, Verdict: lang.Accept, Blocked: 1},
		{Evaluated: true, Verdict: lang.Drop, Stmt: 1},
		{Evaluated: true, Verdict: lang.Drop, Stmt: 1, Blocked: 3},
		{Evaluated: true, Verdict: lang.Accept},
	}
	rp := New(stubPolicy(), &knockEngine{open: map[netip.Addr]bool{}})
	rp.EvalBlocked = true
	for i := range ps {
		if got := rp.Step(&ps[i]); got != want[i] {
			t.Errorf("packet %d: %+v, want %+v", ps[i].N, got, want[i])
		}
	}
	if rp.Packets != 5 || rp.Evaluated != 5 || rp.BlockedPackets != 2 || rp.Verdicts[lang.Drop] != 3 || rp.Verdicts[lang.Accept] != 2 {
		t.Errorf("counts: %d packets, %d evaluated, %d blocked, verdicts %v", rp.Packets, rp.Evaluated, rp.BlockedPackets, rp.Verdicts)
	}
}
