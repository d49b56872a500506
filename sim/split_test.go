package sim

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// TestSplitChangesNothing runs random traffic through the examples once
// on one Sim and once divided by the Split between two: every packet
// must get the same verdict, deciding rule, comment, hook and state.
func TestSplitChangesNothing(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.kwl")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	addrs := []netip.Addr{TestFirewall4, TestFirewall6, netip.MustParseAddr("198.51.100.10"),
		netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("192.168.1.5"), netip.MustParseAddr("fd00::7"),
		netip.MustParseAddr("2001:db8::5")}
	ports := []uint16{22, 1599, 1600, 1601, 1602, 7000, 8000, 9000, 443, 53, 80, 2222, 0}
	splits := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pol, diags := lang.Load(f, src)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		for _, b := range Backends {
			for _, hosts := range [][]netip.Addr{nil, {TestFirewall4, TestFirewall6}} {
				t.Run(filepath.Base(f)+"/"+b, func(t *testing.T) {
					opts := Options{Hosts: hosts}
					one, _ := New(b, pol, opts)
					var two [2]*Sim
					two[0], _ = New(b, pol, opts)
					two[1], _ = New(b, pol, opts)
					if one == nil || two[0] == nil || two[1] == nil {
						t.Fatal("no simulator")
					}
					sp, ok := one.Split()
					if !ok {
						t.Skip("no split for this ruleset")
					}
					splits++
					rng := rand.New(rand.NewPCG(5, uint64(len(f))))
					var now time.Duration
					inert := 0
					for i := 0; i < 20000; i++ {
						now += time.Duration(rng.IntN(4000)) * time.Millisecond
						p := capture.Packet{Time: now,
							Src: addrs[rng.IntN(len(addrs))], Dst: addrs[rng.IntN(len(addrs))],
							Proto: []lang.Proto{lang.TCP, lang.TCP, lang.UDP, lang.ICMP, 58}[rng.IntN(5)],
							SPort: ports[rng.IntN(len(ports))], DPort: ports[rng.IntN(len(ports))],
							Flags:    []capture.TCPFlags{capture.SYN, capture.SYN, capture.ACK, capture.SYN | capture.ACK, capture.FIN | capture.ACK}[rng.IntN(5)],
							ICMPType: []uint8{0, 8}[rng.IntN(2)]}
						q := p
						part := 0
						if sp.Inert(&p) {
							part = 1
							inert++
						}
						a, z := one.Eval(&p), two[part].Eval(&q)
						if a.Verdict != z.Verdict || a.Rule != z.Rule || a.Stmt != z.Stmt || a.Comment != z.Comment ||
							a.Hook != z.Hook || a.State != z.State {
							t.Fatalf("packet %d %+v (inert %v):\n one Sim: %+v\n split: %+v", i, p, part == 1, a, z)
						}
					}
					if inert == 0 || inert == 20000 {
						t.Errorf("%d of 20000 packets inert: the test divides nothing", inert)
					}
				})
			}
		}
	}
	if splits == 0 {
		t.Error("no example has a split")
	}
}

// TestSplit checks which rulesets divide: the seed's does, on both
// backends, with the ports its rules name; one whose limit is not
// guarded by a port would not.
func TestSplit(t *testing.T) {
	pol, diags := lang.Load("bench.kwl", []byte(benchPolicy))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, b := range Backends {
		s, _ := New(b, pol, Options{})
		sp, ok := s.Split()
		if !ok {
			t.Fatalf("%s: no split", b)
		}
		var named []uint16
		for p := 0; p < 1<<16; p++ {
			if sp.has(uint16(p)) {
				named = append(named, uint16(p))
			}
		}
		if len(named) != 4 || named[0] != 22 || named[1] != 1599 || named[2] != 1600 || named[3] != 1601 {
			t.Errorf("%s: ports %v, want [22 1599 1600 1601]", b, named)
		}
		for _, c := range []struct {
			p     capture.Packet
			inert bool
		}{
			{capture.Packet{Proto: lang.TCP, SPort: 40000, DPort: 80}, true},
			{capture.Packet{Proto: lang.TCP, SPort: 40000, DPort: 22}, false},
			{capture.Packet{Proto: lang.TCP, SPort: 22, DPort: 40000}, false},
			{capture.Packet{Proto: lang.UDP, SPort: 1600, DPort: 53}, false},
			{capture.Packet{Proto: lang.ICMP}, true},
		} {
			if got := sp.Inert(&c.p); got != c.inert {
				t.Errorf("%s: Inert(%v %d > %d) = %v", b, c.p.Proto, c.p.SPort, c.p.DPort, got)
			}
		}
	}
}
