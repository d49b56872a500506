package sim

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// noDispatch makes every chain of s visit all its rules.
func noDispatch(s *Sim) {
	switch e := s.eng.(type) {
	case *nftEngine:
		for i := range e.chains {
			e.chains[i].disp = dispatch{}
		}
	case *iptEngine:
		for f := range e.fam {
			for _, t := range []*itable{&e.fam[f].filter, &e.fam[f].nat} {
				for i := range t.chains {
					t.chains[i].disp = dispatch{}
				}
			}
		}
	}
}

// eachExample runs f in a subtest for every example policy, backend and
// choice of hosts (none, or the test firewall's addresses).
func eachExample(t *testing.T, f func(t *testing.T, pol *lang.Policy, backend string, hosts []netip.Addr)) {
	files, _ := filepath.Glob("../examples/*.kwl")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pol, diags := lang.Load(file, src)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", file, diags)
		}
		for _, b := range compile.Names() {
			for _, hosts := range [][]netip.Addr{nil, {TestFirewall4, TestFirewall6}} {
				t.Run(filepath.Base(file)+"/"+b, func(t *testing.T) { f(t, pol, b, hosts) })
			}
		}
	}
}

// randomTraffic returns n packets among a few addresses and the ports
// the examples name (and some they do not), from those ports or from a
// few client ports, of every protocol and several TCP flags, each up to
// maxStep after the previous one.
func randomTraffic(seed uint64, n int, maxStep time.Duration) []capture.Packet {
	addrs := []netip.Addr{TestFirewall4, TestFirewall6, netip.MustParseAddr("198.51.100.10"),
		netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("192.168.1.5"), netip.MustParseAddr("fd00::7"),
		netip.MustParseAddr("2001:db8::5")}
	ports := []uint16{22, 1599, 1600, 1601, 1602, 7000, 8000, 9000, 443, 53, 80, 2222, 0}
	rng := rand.New(rand.NewPCG(seed, 0))
	var now time.Duration
	ps := make([]capture.Packet, n)
	for i := range ps {
		now += time.Duration(rng.Int64N(int64(maxStep)))
		sport := ports[rng.IntN(len(ports))]
		if rng.IntN(2) == 0 {
			sport = uint16(40000 + rng.IntN(8)) // a client's port
		}
		ps[i] = capture.Packet{N: i + 1, Time: now,
			Src: addrs[rng.IntN(len(addrs))], Dst: addrs[rng.IntN(len(addrs))],
			Proto: []lang.Proto{lang.TCP, lang.TCP, lang.UDP, lang.ICMP, 58}[rng.IntN(5)],
			SPort: sport, DPort: ports[rng.IntN(len(ports))],
			Flags:    []capture.TCPFlags{capture.SYN, capture.SYN, capture.ACK, capture.SYN | capture.ACK, capture.FIN | capture.ACK}[rng.IntN(5)],
			ICMPType: []uint8{0, 8}[rng.IntN(2)]}
	}
	return ps
}

// TestDispatchChangesNothing runs random traffic through the examples
// twice, with the chains skipping the rules a packet's port rules out and
// with every rule visited: verdicts, deciding rules and explanations must
// be the same.
func TestDispatchChangesNothing(t *testing.T) {
	eachExample(t, func(t *testing.T, pol *lang.Policy, b string, hosts []netip.Addr) {
		opts := Options{Hosts: hosts, Explain: true}
		fast, _ := New(b, pol, opts)
		slow, _ := New(b, pol, opts)
		if fast == nil || slow == nil {
			t.Fatal("no simulator")
		}
		noDispatch(slow)
		for i, p := range randomTraffic(3, 5000, 2*time.Second) {
			q := p
			a, z := fast.Eval(&p), slow.Eval(&q)
			if a.Verdict != z.Verdict || a.Rule != z.Rule || a.Comment != z.Comment || a.Hook != z.Hook ||
				a.State != z.State || !slices.Equal(a.Events, z.Events) {
				t.Fatalf("packet %d %+v:\n dispatch: %+v\n all rules: %+v", i, p, a, z)
			}
		}
	})
}

// TestExecEveryBackend checks that the simulator has an executor for
// every backend of the registry, and refuses what is no ruleset.
func TestExecEveryBackend(t *testing.T) {
	pol, diags := lang.Load("t.kwl", []byte("knock 1600 opens ssh for 60s\n"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for _, b := range compile.Backends() {
		rs, _ := b.Lower(pol)
		s, err := Exec(rs, Options{})
		if err != nil {
			t.Errorf("%s: %v", b.Name(), err)
			continue
		}
		if s.Backend() != b.Name() {
			t.Errorf("%s: the Sim says it runs %s", b.Name(), s.Backend())
		}
	}
	if _, err := Exec("not a ruleset", Options{}); err == nil {
		t.Error("Exec ran a string")
	}
	if s, diags := New("pf", pol, Options{}); s != nil || !diags.HasErrors() {
		t.Errorf(`New("pf") = %v, %v; want an error`, s, diags)
	}
}
