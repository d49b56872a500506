//go:build linux

package kerneltest

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// Scenario is a policy and the packets sent to it, like a kwl test block
// whose expectations are the kernel's.
type Scenario struct {
	Name   string
	Policy string // kwl source
	// Backends restricts the scenario to some backends; empty means all.
	Backends []string
	Packets  []Packet
	// Boundary marks a scenario that puts packets on purpose near a timing
	// boundary: the margin check is not made.
	Boundary bool
	// SetSize, when > 0, replaces the size of every set of the lowered nft
	// ruleset (the kernel's and the simulator's alike): a small size is
	// how a test reaches "set full" with a handful of sources.
	SetSize int
	// Want is what SPEC.md's semantics say of each packet, one letter per
	// packet: 'a' accept, 'd' drop, '?' not stated (or backend-specific).
	// WantOn overrides it for one backend. Empty: no expectation. The
	// kernel is checked against it (TestCatalogKernel), which tests the
	// lowering without the simulator.
	Want   string
	WantOn map[string]string
	// Clock is the wall-clock time of the scenario's time 0, at which
	// the token sets of secret knocks are filled, with stand-in secrets
	// (secret.StandIn), for the kernel and the simulator alike.
	Clock time.Time
}

// Expect returns the expectation for a backend, "" when there is none.
func (s *Scenario) Expect(backend string) string {
	if w, ok := s.WantOn[backend]; ok {
		return w
	}
	return s.Want
}

// For reports whether the scenario runs on the backend.
func (s *Scenario) For(backend string) bool {
	if len(s.Backends) == 0 {
		return true
	}
	for _, b := range s.Backends {
		if b == backend {
			return true
		}
	}
	return false
}

// Steps is a small language for writing scenario packets by hand, one per
// line: "TIME SRC[:SPORT] PORT [data] [flags FLAGS]", as in
// "1.5s 198.51.100.10 tcp/22", "300ms [2001:db8:51::10]:41000 1600 data"
// or "1s 198.51.100.10 1600 flags A" (an ACK scan's probe). A bare port
// is TCP; a '#' starts a comment.
func Steps(text string) []Packet {
	var pkts []Packet
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 || len(f) > 6 {
			panic("kerneltest.Steps: bad line: " + line)
		}
		at, err := time.ParseDuration(f[0])
		if err != nil {
			panic("kerneltest.Steps: " + err.Error())
		}
		p := Packet{At: at}
		src := f[1]
		if ap, err := netip.ParseAddrPort(src); err == nil {
			p.Src, p.SPort = ap.Addr(), ap.Port()
		} else {
			p.Src = netip.MustParseAddr(src)
		}
		p.Port = ParsePort(f[2])
		rest := f[3:]
		if len(rest) > 0 && rest[0] == "data" {
			p.Kind = lang.Data
			rest = rest[1:]
		}
		if len(rest) == 2 && rest[0] == "flags" {
			fl, _, ok := lang.ParseTCPFlags(rest[1])
			if !ok {
				panic("kerneltest.Steps: bad flags: " + line)
			}
			p.Flags, p.HasFlags = fl, true
			rest = nil
		}
		if len(rest) > 0 {
			panic("kerneltest.Steps: bad line: " + line)
		}
		pkts = append(pkts, p)
	}
	return pkts
}

// ParsePort parses "22", "tcp/22" or "udp/53".
func ParsePort(s string) lang.Port {
	proto := lang.TCP
	if p, n, ok := strings.Cut(s, "/"); ok {
		switch p {
		case "tcp":
		case "udp":
			proto = lang.UDP
		default:
			panic("kerneltest: bad protocol in " + s)
		}
		s = n
	}
	var num int
	if _, err := fmt.Sscanf(s, "%d", &num); err != nil || num <= 0 || num > 65535 {
		panic("kerneltest: bad port " + s)
	}
	return lang.Port{Proto: proto, Num: uint16(num)}
}
