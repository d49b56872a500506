package sim

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/internal/irtest"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// TestExamples runs the test blocks of every shipped example on each
// backend that compiles it (irtest.Examples), as `kwl test` does.
func TestExamples(t *testing.T) {
	for _, b := range compile.Names() {
		for _, f := range irtest.Examples(t, "../examples", b) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			pol, diags := lang.Load(f, src)
			if diags.HasErrors() {
				t.Fatalf("%s: %v", f, diags)
			}
			for _, tt := range pol.Tests {
				t.Run(filepath.Base(f)+"/"+b+"/"+tt.Name, func(t *testing.T) {
					r := RunTest(pol, tt, b)
					if r.Err != nil {
						t.Fatal(r.Err)
					}
					for _, sr := range r.Failures() {
						t.Error(sr.Message())
					}
				})
			}
		}
	}
}

// TestEvalRandomTraffic sends random packets (any flags, protocols,
// families, replies, times that stall) through the examples on both
// backends: nothing may panic, and the live state stays bounded.
func TestEvalRandomTraffic(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.kwl")
	rng := rand.New(rand.NewPCG(1, 2))
	addrs := []netip.Addr{TestFirewall4, TestFirewall6, netip.MustParseAddr("198.51.100.10"),
		netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("192.168.1.5"), netip.MustParseAddr("fd00::7"),
		netip.MustParseAddr("2001:db8::5"), {}}
	ports := []uint16{22, 1599, 1600, 1601, 7000, 8000, 9000, 443, 53, 0}
	for _, f := range files {
		src, _ := os.ReadFile(f)
		pol, _ := lang.Load(f, src)
		for _, b := range compile.Names() {
			for _, hosts := range [][]netip.Addr{nil, {TestFirewall4, TestFirewall6}} {
				s, diags := New(b, pol, Options{Hosts: hosts, Explain: rng.IntN(2) == 0})
				if s == nil {
					t.Fatalf("%s %s: %v", f, b, diags)
				}
				var now time.Duration
				for i := 0; i < 3000; i++ {
					now += time.Duration(rng.IntN(3000)) * time.Millisecond
					p := capture.Packet{Time: now - time.Duration(rng.IntN(2))*time.Second,
						Src: addrs[rng.IntN(len(addrs))], Dst: addrs[rng.IntN(len(addrs))],
						Proto: []lang.Proto{lang.TCP, lang.UDP, lang.ICMP, 58, 47}[rng.IntN(5)],
						SPort: ports[rng.IntN(len(ports))], DPort: ports[rng.IntN(len(ports))],
						Flags: capture.TCPFlags(rng.IntN(32)), ICMPType: uint8(rng.IntN(130))}
					s.Eval(&p)
				}
				if n := s.Flows(); n > 3000 {
					t.Errorf("%s %s: %d flows", f, b, n)
				}
			}
		}
	}
}
