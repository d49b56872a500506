package sim

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// TestSplitChangesNothing runs random traffic through the examples once
// on one Sim and once divided by the Split between two: every packet
// must get the same verdict, deciding rule, comment, hook and state.
func TestSplitChangesNothing(t *testing.T) {
	splits := 0
	check := func(t *testing.T, pol *lang.Policy, b string, hosts []netip.Addr) {
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
		const n = 20000
		inert := 0
		for i, p := range randomTraffic(5, n, 4*time.Second) {
			q := p
			part := 0
			if sp.Inert(&p) {
				part = 1
				inert++
			}
			a, z := one.Eval(&p), two[part].Eval(&q)
			if a.Verdict != z.Verdict || a.Rule != z.Rule || a.Comment != z.Comment ||
				a.Hook != z.Hook || a.State != z.State {
				t.Fatalf("packet %d %+v (inert %v):\n one Sim: %+v\n split: %+v", i, p, part == 1, a, z)
			}
		}
		if inert == 0 || inert == n {
			t.Errorf("%d of %d packets inert: the test divides nothing", inert, n)
		}
	}
	eachExample(t, check)
	if splits == 0 {
		t.Error("no example has a split")
	}
	// Statements the examples do not have: global limits, bans, allowed
	// sources, a UDP step in a sequence, a door restricted by source and
	// family, a limit by /24, a service of two ports.
	pol, diags := lang.Load("extra.kwl", []byte(splitExtra))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, b := range compile.Names() {
		for _, hosts := range [][]netip.Addr{nil, {TestFirewall4, TestFirewall6}} {
			t.Run("extra/"+b, func(t *testing.T) {
				before := splits
				check(t, pol, b, hosts)
				if splits == before {
					t.Error("no split")
				}
			})
		}
	}
}

const splitExtra = `service web = tcp/80, tcp/443
limit https 100/1s family ipv4
limit ssh 5/60s per source ban 300s
allow ssh from 192.168.0.0/16, fd00::/8
knock 7000, udp/8000, 9000 within 5s opens ssh for 30s
knock 1600 from 203.0.113.0/24 opens web for 60s family ipv4
limit dns 10/1s per source/24
close web on 1601
`

// TestSplit checks which rulesets divide: the seed's does, on both
// backends, with the ports its rules name; one whose limit is not
// guarded by a port would not.
func TestSplit(t *testing.T) {
	pol, diags := lang.Load("bench.kwl", []byte(benchPolicy))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, b := range compile.Names() {
		s, _ := New(b, pol, Options{})
		sp, ok := s.Split()
		if !ok {
			t.Fatalf("%s: no split", b)
		}
		if got := sp.named(); !slices.Equal(got, []uint16{22, 1599, 1600, 1601}) {
			t.Errorf("%s: ports %v, want [22 1599 1600 1601]", b, got)
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

// TestSplitPorts checks that the split names every port of a policy with
// many kinds of statement, on both backends: a port left out would send
// its packets to the inert part, whose simulator has no state for them.
func TestSplitPorts(t *testing.T) {
	pol, diags := lang.Load("extra.kwl", []byte(splitExtra))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := []uint16{22, 53, 80, 443, 1600, 1601, 7000, 8000, 9000}
	for _, b := range compile.Names() {
		s, _ := New(b, pol, Options{})
		sp, ok := s.Split()
		if !ok {
			t.Fatalf("%s: no split", b)
		}
		if got := sp.named(); !slices.Equal(got, want) {
			t.Errorf("%s: ports %v, want %v", b, got, want)
		}
	}
}

// named lists the ports of the split, in order.
func (sp *Split) named() []uint16 {
	var ps []uint16
	for p := 0; p < 1<<16; p++ {
		if sp.has(uint16(p)) {
			ps = append(ps, uint16(p))
		}
	}
	return ps
}
