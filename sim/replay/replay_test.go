package replay

import (
	"net/netip"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// knockEngine is a stand-in simulator: tcp/1600 opens tcp/22 for the
// source, forever; everything else is accepted.
type knockEngine struct{ open map[netip.Addr]bool }

// stubPolicy is the policy the stand-in engines decide by: two
// statements, on lines 1 and 2 of p.kwl, that guard nothing.
func stubPolicy() *lang.Policy {
	return &lang.Policy{File: "p.kwl", Services: []*lang.Service{
		{Ref: lang.Ref{ID: 1, Pos: lang.Pos{File: "p.kwl", Line: 1, Col: 1}}, Name: "knock"},
		{Ref: lang.Ref{ID: 2, Pos: lang.Pos{File: "p.kwl", Line: 2, Col: 1}}, Name: "ssh"},
	}}
}

func (e *knockEngine) Eval(p *capture.Packet) Result {
	switch {
	case p.Proto == lang.TCP && p.DPort == 1600:
		e.open[p.Src] = true
		return Result{Verdict: lang.Drop, Stmt: 1}
	case p.Proto == lang.TCP && p.DPort == 22 && p.Flags&(capture.SYN|capture.ACK) == capture.SYN:
		if e.open[p.Src] {
			return Result{Verdict: lang.Accept, Stmt: 1}
		}
		return Result{Verdict: lang.Drop, Stmt: 2}
	}
	return Result{Verdict: lang.Accept}
}

// TestStepBlockedFlows replays a refused connection, its answer, a knock
// and the retransmitted SYN one packet at a time.
func TestStepBlockedFlows(t *testing.T) {
	client, server := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("192.0.2.1")
	pkt := func(n int, at time.Duration, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags capture.TCPFlags) capture.Packet {
		return capture.Packet{N: n, Time: at, Src: src, SPort: sport, Dst: dst, DPort: dport, Proto: lang.TCP, Flags: flags}
	}
	ps := []capture.Packet{
		pkt(1, 0, client, 40000, server, 22, capture.SYN),                                 // dropped: no knock
		pkt(2, 100*time.Millisecond, server, 22, client, 40000, capture.SYN|capture.ACK),  // its answer: blocked flow
		pkt(3, 200*time.Millisecond, client, 40000, server, 22, capture.ACK),              // and the ACK
		pkt(4, time.Second, client, 40001, server, 1600, capture.SYN),                     // knock
		pkt(5, 1500*time.Millisecond, client, 40000, server, 22, capture.SYN),             // evaluated again, accepted
		pkt(6, 1600*time.Millisecond, server, 22, client, 40000, capture.SYN|capture.ACK), // a reply of an accepted flow
		pkt(7, 500*time.Millisecond, client, 40000, server, 22, capture.ACK),              // time goes back
	}
	want := []Outcome{
		{Evaluated: true, Verdict: lang.Drop, Stmt: 2},
		{Verdict: lang.Drop, Stmt: 2, Blocked: 1},
		{Verdict: lang.Drop, Stmt: 2, Blocked: 1},
		{Evaluated: true, Verdict: lang.Drop, Stmt: 1},
		{Evaluated: true, Verdict: lang.Accept, Stmt: 1},
		{Evaluated: true, Verdict: lang.Accept},
		{Evaluated: true, Verdict: lang.Accept},
	}
	rp := New(stubPolicy(), &knockEngine{open: map[netip.Addr]bool{}})
	for i := range ps {
		if got := rp.Step(&ps[i]); got != want[i] {
			t.Errorf("packet %d: %+v, want %+v", ps[i].N, got, want[i])
		}
	}
	if ps[6].Time != 1600*time.Millisecond {
		t.Errorf("packet 7 replayed at %v, want 1.6s", ps[6].Time)
	}
	if rp.Packets != 7 || rp.Evaluated != 5 || rp.BlockedPackets != 2 || rp.Verdicts[lang.Drop] != 4 {
		t.Errorf("counts: %d packets, %d evaluated, %d blocked, %d dropped", rp.Packets, rp.Evaluated, rp.BlockedPackets, rp.Verdicts[lang.Drop])
	}
	if got := string(rp.RuleOf(&want[1])); got != "p.kwl:2:1" {
		t.Errorf("rule of the blocked flow: %q", got)
	}
}
