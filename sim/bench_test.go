package sim

import (
	"net/netip"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// benchPolicy is the seed's SSHKnock and Limit.
const benchPolicy = `knock 1600 opens ssh for 60s
close ssh on 1599, 1601
limit ssh 3/60s per source
`

// benchPackets is a workload that keeps every mechanism busy: 256
// sources knocking, connecting (and being limited), closing their doors
// and sending traffic the policy does not mention, one packet per
// millisecond. No connection is answered, so accepted flows stay NEW and
// every SYN runs the whole ruleset.
func benchPackets() []capture.Packet {
	const sources, kinds, ports = 256, 8, 64
	pkts := make([]capture.Packet, sources*kinds*ports)
	for i := range pkts {
		s, k, sp := i%sources, (i/sources)%kinds, (i/(sources*kinds))%ports
		p := capture.Packet{Src: netip.AddrFrom4([4]byte{10, 1, 0, byte(s)}), Dst: TestFirewall4, Proto: lang.TCP,
			SPort: uint16(40000 + sp), DPort: 22, Flags: capture.SYN, Len: 60}
		switch k {
		case 0:
			p.DPort = 1600
		case 6:
			p.DPort = 1599
		case 7:
			p.DPort = 80
		}
		pkts[i] = p
	}
	return pkts
}

func benchEval(b *testing.B, backend string) {
	pol, diags := lang.Load("bench.kwl", []byte(benchPolicy))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	s, diags := New(backend, pol, Options{Hosts: []netip.Addr{TestFirewall4, TestFirewall6}})
	if s == nil {
		b.Fatal(diags)
	}
	pkts := benchPackets()
	var t time.Duration
	run := func(n int) {
		for i := 0; i < n; i++ {
			p := &pkts[i%len(pkts)]
			t += time.Millisecond
			p.Time = t
			s.Eval(p)
		}
	}
	run(2 * len(pkts)) // warm up: flows, sets and lists at their working size
	b.ReportAllocs()
	b.ResetTimer()
	run(b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkEvalNFT measures the simulator's per-packet cost on the nft
// backend (sets with timeouts, per-element token buckets).
func BenchmarkEvalNFT(b *testing.B) { benchEval(b, "nft") }

// BenchmarkEvalIptables measures it on the iptables backend (xt_recent).
func BenchmarkEvalIptables(b *testing.B) { benchEval(b, "iptables") }
