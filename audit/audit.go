// Package audit runs attacks against a policy in the simulator of a
// backend and reports what an attacker can do before the policy is
// deployed: port scans that open a door (Scans), and forged source
// addresses that close a victim's door or get it banned (Spoofing).
//
// Each attack is a seeded timeline of packets from one scanner, replayed
// through a fresh simulator (sim.New), then a connection attempt to the
// door's service: the scan "opens" the door when that attempt is
// accepted. A scan's own packet to the service that is accepted "reaches"
// it. Random orders are estimated over many scanners (Options.Trials),
// with a 95% Wilson interval.
//
// A scan is modelled by the packets that matter: those to the ports the
// policy names (knocks, closes, services), at the times the scan sends
// them; the others are to ports no rule of the door looks at, unless a
// sequence is strict (lang.ResetAny), for which one packet to another
// port stands for every gap between two of them.
package audit

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
)

// Options configure an audit.
type Options struct {
	Backend string
	Trials  int           // scanners for a random order; 1000 by default
	Seed    uint64        // of the random orders
	Rate    time.Duration // between two probes of a scan; 1 ms by default (1,000 packets/s)
}

// An Effect is what an attack does.
type Effect string

// The effects.
const (
	Opens  Effect = "opens"  // a door opens for the attacker
	Closes Effect = "closes" // a victim's door closes (denial of service)
	Bans   Effect = "bans"   // a victim that sent nothing is banned
)

// A Finding is what one attack did to one door, limit or close.
type Finding struct {
	Ref     lang.Ref // the statement attacked
	Service string
	Backend string
	Effect  Effect
	Attack  string
	// Opened is the share of attackers that got the effect: for a scan,
	// that left the door open (1 or 0 for a fixed order); Reached the
	// share whose own packet to the service was accepted. Low and High
	// bound Opened (95%).
	Opened, Reached float64
	Low, High       float64
	Trials          int
	Hint            string
}

// Fails reports whether the attack opened a door or banned a victim at
// least once: what kwl audit exits 1 for. A closed door is reported, not
// failed: anyone may close a door with a forged knock by design.
func (f Finding) Fails() bool { return f.Opened > 0 && f.Effect != Closes }

// The addresses of an audit: the firewall and the scanner.
var (
	firewall4 = netip.MustParseAddr("198.51.100.1")
	scanner4  = netip.MustParseAddr("203.0.113.66")
)

// Scans runs the scan attacks against every door of p that IPv4 reaches.
func Scans(p *lang.Policy, o Options) ([]Finding, error) {
	if o.Trials <= 0 {
		o.Trials = 1000
	}
	if o.Rate <= 0 {
		o.Rate = time.Millisecond
	}
	ports := policyPorts(p)
	var out []Finding
	for _, d := range p.Doors {
		if d.Family == lang.IPv6 || len(d.From) > 0 || d.Service.Forward.IsValid() {
			continue // a scanner from anywhere, to the firewall's IPv4 address
		}
		svc := d.Service.Ports[0]
		strict := d.Reset == lang.ResetAny
		run := func(order []lang.Port, at []time.Duration) (opened, reached bool, err error) {
			return scan(p, o.Backend, order, at, svc, strict, capture.SYN)
		}
		var fs []Finding
		for _, dir := range []string{"ascending", "descending"} {
			order, at := sweep(ports, svc.Proto, dir == "descending", o.Rate)
			opened, reached, err := run(order, at)
			if err != nil {
				return nil, err
			}
			f := Finding{Ref: d.Ref, Service: d.Service.Name, Backend: o.Backend, Effect: Opens, Attack: dir + " sweep of every " + protoName(svc.Proto) + " port",
				Opened: b2f(opened), Reached: b2f(reached), Trials: 1}
			f.Low, f.High = f.Opened, f.Opened
			fs = append(fs, f)
		}
		// nmap's other TCP scans, in order: ACK, FIN, Xmas, null.
		if svc.Proto == lang.TCP {
			for _, sc := range []struct {
				name  string
				flags capture.TCPFlags
			}{{"ACK", capture.ACK}, {"FIN", capture.FIN}, {"Xmas", capture.FIN | capture.PSH | capture.URG}, {"null", 0}} {
				order, at := sweep(ports, lang.TCP, false, o.Rate)
				opened, reached, err := scan(p, o.Backend, order, at, svc, strict, sc.flags)
				if err != nil {
					return nil, err
				}
				f := Finding{Ref: d.Ref, Service: d.Service.Name, Backend: o.Backend, Effect: Opens, Attack: "ascending " + sc.name + " scan of every TCP port",
					Opened: b2f(opened), Reached: b2f(reached), Trials: 1}
				f.Low, f.High = f.Opened, f.Opened
				fs = append(fs, f)
			}
		}
		// A random order of the whole range (masscan's default): the
		// positions of the policy's ports in a random permutation.
		r := rand.New(rand.NewPCG(o.Seed, uint64(d.Ref.ID)))
		nOpen, nReach := 0, 0
		same := ofProtoOnly(ports, svc.Proto)
		for range o.Trials {
			pos := randomPositions(r, len(same), 65535)
			order := slices.Clone(same)
			idx := make([]int, len(order))
			for i := range idx {
				idx[i] = i
			}
			slices.SortFunc(idx, func(a, b int) int { return pos[a] - pos[b] })
			sorted := make([]lang.Port, len(order))
			at := make([]time.Duration, len(order))
			for i, j := range idx {
				sorted[i] = order[j]
				at[i] = time.Duration(pos[j]) * o.Rate
			}
			opened, reached, err := run(sorted, at)
			if err != nil {
				return nil, err
			}
			nOpen += b2i(opened)
			nReach += b2i(reached)
		}
		f := Finding{Ref: d.Ref, Service: d.Service.Name, Backend: o.Backend, Effect: Opens, Attack: "random-order sweep of every " + protoName(svc.Proto) + " port",
			Opened: float64(nOpen) / float64(o.Trials), Reached: float64(nReach) / float64(o.Trials), Trials: o.Trials}
		f.Low, f.High = wilson(nOpen, o.Trials)
		fs = append(fs, f)
		for i := range fs {
			if fs[i].Fails() {
				fs[i].Hint = hint(p, d)
			}
		}
		out = append(out, fs...)
	}
	return out, nil
}

// scan replays one scanner's packets (to order's ports at the times at,
// TCP ones with flags), then a connection attempt (a SYN) to svc 1 ms
// after the last of them.
func scan(p *lang.Policy, backend string, order []lang.Port, at []time.Duration, svc lang.Port, strict bool, flags capture.TCPFlags) (opened, reached bool, err error) {
	s, diags := sim.New(backend, p, sim.Options{Hosts: []netip.Addr{firewall4}})
	if s == nil {
		return false, false, fmt.Errorf("%v", diags)
	}
	n := 0
	send := func(pt lang.Port, t time.Duration, fl capture.TCPFlags) lang.Verdict {
		n++
		pk := probe(n, t, scanner4, pt, fl)
		v, _, _ := s.Decide(&pk)
		return v
	}
	var last time.Duration
	for i, pt := range order {
		if strict && i > 0 && at[i]-at[i-1] > time.Millisecond {
			// The scan probed another port in between.
			send(lang.Port{Proto: pt.Proto, Num: otherPort(order)}, at[i]-time.Microsecond, flags)
		}
		v := send(pt, at[i], flags)
		if pt == svc && v == lang.Accept {
			reached = true
		}
		last = at[i]
	}
	return send(svc, last+time.Millisecond, capture.SYN) == lang.Accept, reached, nil
}

// probe is the n-th packet of an attack: from src to port of the
// firewall at t, from a source port of its own, a TCP one with flags.
func probe(n int, t time.Duration, src netip.Addr, port lang.Port, flags capture.TCPFlags) capture.Packet {
	pk := capture.Packet{N: n, Time: t, Src: src, Dst: firewall4, Proto: port.Proto, SPort: uint16(30000 + n%30000), DPort: port.Num, Len: 40}
	if port.Proto == lang.TCP {
		pk.Flags = flags
	}
	return pk
}

// policyPorts returns every port the policy names: knocks, closes and
// services, once each.
func policyPorts(p *lang.Policy) []lang.Port {
	var ps []lang.Port
	add := func(l []lang.Port) {
		for _, x := range l {
			if !slices.Contains(ps, x) {
				ps = append(ps, x)
			}
		}
	}
	for _, d := range p.Doors {
		add(d.Sequence)
		add(d.Service.Ports)
	}
	for _, r := range p.Revokes {
		add(r.Ports)
		add(r.Sequence)
	}
	for _, s := range p.Services {
		add(s.Ports)
	}
	return ps
}

func ofProtoOnly(ps []lang.Port, proto lang.Proto) []lang.Port {
	var out []lang.Port
	for _, p := range ps {
		if p.Proto == proto {
			out = append(out, p)
		}
	}
	return out
}

// sweep returns the ports of ps of one protocol (a scan sends one) in
// the order a sweep of the whole range sends them, ascending or
// descending, with the times it sends them, a probe every rate.
func sweep(ps []lang.Port, proto lang.Proto, descending bool, rate time.Duration) ([]lang.Port, []time.Duration) {
	order := ofProtoOnly(ps, proto)
	slices.SortFunc(order, func(a, b lang.Port) int { return int(a.Num) - int(b.Num) })
	if descending {
		slices.Reverse(order)
	}
	at := make([]time.Duration, len(order))
	for i, pt := range order {
		idx := int(pt.Num) - 1
		if descending {
			idx = 65535 - int(pt.Num)
		}
		at[i] = time.Duration(idx) * rate
	}
	return order, at
}

// otherPort returns a port none of ps is.
func otherPort(ps []lang.Port) uint16 {
	for n := uint16(65535); ; n-- {
		if !slices.ContainsFunc(ps, func(p lang.Port) bool { return p.Num == n }) {
			return n
		}
	}
}

// randomPositions returns k distinct positions in [0, n), at random.
func randomPositions(r *rand.Rand, k, n int) []int {
	pos := make([]int, 0, k)
	for len(pos) < k {
		x := r.IntN(n)
		if !slices.Contains(pos, x) {
			pos = append(pos, x)
		}
	}
	return pos
}

// wilson is the 95% Wilson score interval of k successes in n trials.
func wilson(k, n int) (lo, hi float64) {
	const z = 1.959964
	p := float64(k) / float64(n)
	den := 1 + z*z/float64(n)
	mid := (p + z*z/(2*float64(n))) / den
	half := z * math.Sqrt(p*(1-p)/float64(n)+z*z/(4*float64(n)*float64(n))) / den
	return math.Max(0, mid-half), math.Min(1, mid+half)
}

func hint(p *lang.Policy, d *lang.Door) string {
	guarded := slices.ContainsFunc(p.Revokes, func(r *lang.Revoke) bool { return r.Service == d.Service && len(r.Ports) > 0 })
	if len(d.Sequence) == 1 && guarded {
		return "a scan in random order passes the guard ports when it reaches the knock last: knock a sequence, with a short window (within) or strict"
	}
	if len(d.Sequence) == 1 {
		return fmt.Sprintf("guard the knock port on both sides (close %s on %d, %d), or knock a sequence", d.Service.Name, d.Sequence[0].Num-1, d.Sequence[0].Num+1)
	}
	return "a longer sequence, a shorter window between knocks (within), or strict"
}

func protoName(p lang.Proto) string {
	if p == lang.UDP {
		return "UDP"
	}
	return "TCP"
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
