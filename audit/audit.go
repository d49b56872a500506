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
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
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
	// Common are the ports a scan of the common ports probes (nmap's
	// default, its top 1,000 TCP ports; ReadServices), most common first;
	// none: no such scan.
	Common []lang.Port
	// Keep keeps each finding's packets (Finding.Packets), for writing
	// them out as a capture.
	Keep bool

	sim   *sim.Sim     // the simulator every timeline of an attack resets
	simOf *lang.Policy // the policy it runs
}

// withSim returns o with a simulator of p for the timelines of an attack
// to reset: one lowering and compilation, not one per timeline. When the
// policy does not lower, o is returned as it is, and newTimeline reports
// why.
func withSim(p *lang.Policy, o Options) Options {
	if o.sim != nil && o.simOf == p {
		return o
	}
	if s, _ := sim.New(o.Backend, p, simOptions); s != nil {
		o.sim, o.simOf = s, p
	}
	return o
}

// simOptions are the simulator's options of an audit: the firewall's
// addresses.
var simOptions = sim.Options{Hosts: []netip.Addr{firewall4, firewall6}}

// An Effect is what an attack does.
type Effect string

// The effects.
const (
	Opens  Effect = "opens"  // a door opens for the attacker
	Closes Effect = "closes" // a victim's door closes (denial of service)
	Bans   Effect = "bans"   // a victim that sent nothing is banned
	// Replays: a sniffed knock, sent again, opens the door for whoever
	// sends it. Every static sequence can be replayed.
	Replays Effect = "replays"
	// Guessed: what a blind guesser pays to open a door (Finding.Cost).
	Guessed Effect = "guessed"
)

// A Finding is what one attack did to one door, limit or close.
type Finding struct {
	Ref       lang.Ref // the statement attacked
	Statement string   // its keyword: knock, close or limit
	Service   string
	Backend   string
	Effect    Effect
	Attack    string
	// Opened is the share of attackers that got the effect: for a scan,
	// that left the door open (1 or 0 for a fixed order); Reached the
	// share whose own packet to the service was accepted. Low and High
	// bound Opened (95%).
	Opened, Reached float64
	Low, High       float64
	Trials          int
	// Cost is, for a guess, the packets a guesser sends on average.
	Cost float64
	Hint string
	// Packets, when Options.Keep and the attack had its effect, are the
	// packets of the attack, in time order: for a random order, those of
	// the first scanner that opened the door. The last one is the
	// connection attempt (or the victim's) that shows the effect.
	Packets []capture.Packet
}

// Fails reports whether the attack opened a door or banned a victim at
// least once: what kwl audit exits 1 for. A closed door and a replayed
// knock are reported, not failed: anyone may close a door with a forged
// knock, and replay a knock it saw, by design of a static sequence.
func (f Finding) Fails() bool { return f.Opened > 0 && (f.Effect == Opens || f.Effect == Bans) }

// The addresses of an audit: the firewall, the scanner and the victim
// (the address an attacker forges: a client of the policy), per family.
// The firewall's are those of the kernel suite's lab.
var (
	firewall4 = netip.MustParseAddr("198.51.100.1")
	firewall6 = netip.MustParseAddr("2001:db8:51::1")
	scanner4  = netip.MustParseAddr("203.0.113.66")
	scanner6  = netip.MustParseAddr("2001:db8:113::66")
	victim4   = netip.MustParseAddr("203.0.113.10")
	victim6   = netip.MustParseAddr("2001:db8:113::10")
)

// firewallOf returns the firewall's address of src's family.
func firewallOf(src netip.Addr) netip.Addr {
	if src.Is4() {
		return firewall4
	}
	return firewall6
}

// source returns the address an attack sends from against a statement
// of family f that only sources in from may send (any when empty): def4
// or def6, or, for a from list, an address in its first prefix of f's
// family, with the last byte of the default when the prefix leaves it
// free. ok is false when from has no prefix of f's family.
func source(f lang.Family, from []netip.Prefix, def4, def6 netip.Addr) (a netip.Addr, ok bool) {
	if len(from) == 0 {
		if f == lang.IPv6 {
			return def6, true
		}
		return def4, true
	}
	for _, pf := range from {
		a := pf.Masked().Addr()
		if f == lang.IPv4 && a.Is6() || f == lang.IPv6 && a.Is4() {
			continue
		}
		switch bits := pf.Bits(); {
		case bits == a.BitLen():
		case bits <= a.BitLen()-8:
			b := a.AsSlice()
			def := def4
			if a.Is6() {
				def = def6
			}
			b[len(b)-1] = def.AsSlice()[def.BitLen()/8-1]
			a, _ = netip.AddrFromSlice(b)
		default:
			a = a.Next()
		}
		return a, true
	}
	return netip.Addr{}, false
}

// Scans runs the scan attacks against every door of p, from a scanner
// the door lets knock.
func Scans(p *lang.Policy, o Options) ([]Finding, error) {
	o = withSim(p, o)
	if o.Trials <= 0 {
		o.Trials = 1000
	}
	if o.Rate <= 0 {
		o.Rate = time.Millisecond
	}
	ports := policyPorts(p)
	var out []Finding
	for _, d := range p.Doors {
		src, ok := source(d.Family, d.From, scanner4, scanner6)
		if !ok {
			continue
		}
		svc := d.Service.Ports[0]
		sc := scanner{p: p, o: o, src: src, svc: svc, strict: d.Reset == lang.ResetAny}
		var fs []Finding
		add := func(f Finding, tl *timeline) {
			f.Ref, f.Statement, f.Service, f.Backend, f.Effect = d.Ref, "knock", d.Service.Name, o.Backend, Opens
			if len(d.From) > 0 {
				f.Attack += " from " + src.String() + " (in the door's from list)"
			}
			if f.Opened > 0 && tl != nil {
				f.Packets = tl.pkts
			}
			fs = append(fs, f)
		}
		var protos []lang.Proto
		for _, k := range d.Sequence {
			if !slices.Contains(protos, k.Proto) {
				protos = append(protos, k.Proto)
			}
		}
		slices.Sort(protos)
		for _, proto := range protos {
			for _, desc := range []bool{false, true} {
				order, at := sweep(ports, proto, desc, o.Rate)
				opened, reached, tl, err := sc.run(order, at, capture.SYN)
				if err != nil {
					return nil, err
				}
				name := "ascending"
				if desc {
					name = "descending"
				}
				add(fixed(name+" sweep of every "+protoName(proto)+" port", opened, reached), tl)
			}
			// nmap sends a probe that got no answer again: every knock and
			// close is dropped, so every one is sent twice.
			order, at := sweep(ports, proto, false, o.Rate)
			order, at = retransmit(order, at, svc, time.Second)
			opened, reached, tl, err := sc.run(order, at, capture.SYN)
			if err != nil {
				return nil, err
			}
			add(fixed("ascending sweep of every "+protoName(proto)+" port, each unanswered probe sent again 1s later (nmap's retransmission)", opened, reached), tl)
			if proto != lang.TCP {
				continue
			}
			// nmap's other TCP scans, in order: ACK, FIN, Xmas, null.
			for _, fl := range []struct {
				name  string
				flags capture.TCPFlags
			}{{"ACK", capture.ACK}, {"FIN", capture.FIN}, {"Xmas", capture.FIN | capture.PSH | capture.URG}, {"null", 0}} {
				order, at := sweep(ports, lang.TCP, false, o.Rate)
				opened, reached, tl, err := sc.run(order, at, fl.flags)
				if err != nil {
					return nil, err
				}
				add(fixed("ascending "+fl.name+" scan of every TCP port", opened, reached), tl)
			}
		}
		// A random order of the whole range (masscan's default), of each
		// protocol of the knocks, and of both at once when the sequence
		// mixes them.
		orders := [][]lang.Proto{}
		for _, proto := range protos {
			orders = append(orders, []lang.Proto{proto})
		}
		if len(protos) > 1 {
			orders = append(orders, protos)
		}
		for i, ps := range orders {
			r := rand.New(rand.NewPCG(o.Seed, uint64(d.Ref.ID)<<8|uint64(i)))
			f, tl, err := sc.random(r, ofProto(ports, ps...), 65535*len(ps))
			if err != nil {
				return nil, err
			}
			names := make([]string, len(ps))
			for j, pr := range ps {
				names[j] = protoName(pr)
			}
			f.Attack = "random-order sweep of every " + strings.Join(names, " and ") + " port"
			add(f, tl)
		}
		// nmap's default: the most common ports, in random order.
		for i, proto := range protos {
			common := ofProto(o.Common, proto)
			if len(common) == 0 {
				continue
			}
			var ps []lang.Port
			for _, pt := range ofProto(ports, proto) {
				if slices.Contains(common, pt) {
					ps = append(ps, pt)
				}
			}
			r := rand.New(rand.NewPCG(o.Seed, uint64(d.Ref.ID)<<8|uint64(0x80+i)))
			f, tl, err := sc.random(r, ps, len(common))
			if err != nil {
				return nil, err
			}
			f.Attack = fmt.Sprintf("random-order scan of the %s most common %s ports (nmap's default)", commas(int64(len(common))), protoName(proto))
			missed := missing(ofProto(ports, proto), common)
			if len(missed) > 0 && len(ps) > 0 {
				f.Attack += ", which leaves out " + portList(missed)
			}
			if f.Opened > 0 {
				var ranks []string
				for _, k := range d.Sequence {
					if j := slices.Index(common, k); j >= 0 {
						ranks = append(ranks, fmt.Sprintf("%s is its #%d", portText([]lang.Port{k}), j+1))
					}
				}
				f.Hint = fmt.Sprintf("nmap's default scan knocks these (%s): knock ports it does not scan by default", strings.Join(ranks, ", "))
			}
			add(f, tl)
		}
		for i := range fs {
			if fs[i].Fails() && fs[i].Hint == "" {
				fs[i].Hint = hint(p, d)
			}
		}
		out = append(out, fs...)
	}
	return out, nil
}

// fixed is the finding of a scan in a fixed order: one scanner.
func fixed(attack string, opened, reached bool) Finding {
	return Finding{Attack: attack, Opened: b2f(opened), Reached: b2f(reached), Low: b2f(opened), High: b2f(opened), Trials: 1}
}

// A scanner runs scans from src of one door's service.
type scanner struct {
	p      *lang.Policy
	o      Options
	src    netip.Addr
	svc    lang.Port
	strict bool
}

// random runs o.Trials scans of n probes in random order, of which the
// ports ps are some, and returns their finding and the timeline of the
// first scan that opened the door.
func (sc scanner) random(r *rand.Rand, ps []lang.Port, n int) (Finding, *timeline, error) {
	var first *timeline
	nOpen, nReach := 0, 0
	idx := make([]int, len(ps))
	for range sc.o.Trials {
		pos := randomPositions(r, len(ps), n)
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return pos[a] - pos[b] })
		order := make([]lang.Port, len(ps))
		at := make([]time.Duration, len(ps))
		for i, j := range idx {
			order[i] = ps[j]
			at[i] = time.Duration(pos[j]) * sc.o.Rate
		}
		opened, reached, tl, err := sc.run(order, at, capture.SYN)
		if err != nil {
			return Finding{}, nil, err
		}
		if opened && first == nil {
			first = tl
		}
		nOpen += b2i(opened)
		nReach += b2i(reached)
	}
	f := Finding{Opened: float64(nOpen) / float64(sc.o.Trials), Reached: float64(nReach) / float64(sc.o.Trials), Trials: sc.o.Trials}
	f.Low, f.High = wilson(nOpen, sc.o.Trials)
	return f, first, nil
}

// run replays one scan (to order's ports at the times at, TCP ones with
// flags), then a connection attempt (a SYN) to the service 1 ms after
// the last of them.
func (sc scanner) run(order []lang.Port, at []time.Duration, flags capture.TCPFlags) (opened, reached bool, tl *timeline, err error) {
	tl, err = newTimeline(sc.p, sc.o)
	if err != nil {
		return false, false, nil, err
	}
	for i, pt := range order {
		if sc.strict && i > 0 && at[i]-at[i-1] > sc.o.Rate {
			// The scan probed another port in between.
			tl.at(at[i]-time.Microsecond, sc.src, lang.Port{Proto: pt.Proto, Num: otherPort(order)}, flags)
		}
		if tl.at(at[i], sc.src, pt, flags) == lang.Accept && pt == sc.svc {
			reached = true
		}
	}
	return tl.at(tl.now+time.Millisecond, sc.src, sc.svc, capture.SYN) == lang.Accept, reached, tl, nil
}

// probe is the n-th packet of an attack: from src to port of the
// firewall at t, from a source port of its own, a TCP one with flags.
func probe(n int, t time.Duration, src netip.Addr, port lang.Port, flags capture.TCPFlags) capture.Packet {
	pk := capture.Packet{N: n, Time: t, Src: src, Dst: firewallOf(src), Proto: port.Proto, SPort: uint16(30000 + n%30000), DPort: port.Num, Len: 40}
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

// ofProto returns the ports of ps of the protocols protos.
func ofProto(ps []lang.Port, protos ...lang.Proto) []lang.Port {
	var out []lang.Port
	for _, p := range ps {
		if slices.Contains(protos, p.Proto) {
			out = append(out, p)
		}
	}
	return out
}

// sweep returns the ports of ps of one protocol (a scan sends one) in
// the order a sweep of the whole range sends them, ascending or
// descending, with the times it sends them, a probe every rate.
func sweep(ps []lang.Port, proto lang.Proto, descending bool, rate time.Duration) ([]lang.Port, []time.Duration) {
	order := ofProto(ps, proto)
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

// retransmit adds to a scan (order, at) a second probe, after, of every
// port but svc (which answers when open), and returns it in time order.
func retransmit(order []lang.Port, at []time.Duration, svc lang.Port, after time.Duration) ([]lang.Port, []time.Duration) {
	type probe struct {
		port lang.Port
		at   time.Duration
	}
	var ps []probe
	for i, pt := range order {
		ps = append(ps, probe{pt, at[i]})
		if pt != svc {
			ps = append(ps, probe{pt, at[i] + after})
		}
	}
	slices.SortStableFunc(ps, func(a, b probe) int { return cmp.Compare(a.at, b.at) })
	order, at = make([]lang.Port, len(ps)), make([]time.Duration, len(ps))
	for i, p := range ps {
		order[i], at[i] = p.port, p.at
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
	lo, hi = math.Max(0, mid-half), math.Min(1, mid+half)
	if k == 0 {
		lo = 0 // not 1e-19
	}
	if k == n {
		hi = 1
	}
	return lo, hi
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

// Attacks are the attacks Run runs, in order.
var Attacks = []func(*lang.Policy, Options) ([]Finding, error){Scans, Guessing, Spoofing, Exhaustion, Replay}

// Run runs every attack against p in the simulator of o.Backend.
func Run(p *lang.Policy, o Options) ([]Finding, error) {
	o = withSim(p, o)
	var found []Finding
	for _, attack := range Attacks {
		fs, err := attack(p, o)
		if err != nil {
			return found, err
		}
		found = append(found, fs...)
	}
	return found, nil
}

// missing returns the ports of ps that are not in of.
func missing(ps, of []lang.Port) []lang.Port {
	var out []lang.Port
	for _, p := range ps {
		if !slices.Contains(of, p) {
			out = append(out, p)
		}
	}
	return out
}

// portList writes ports as a list: "1599, 1601 and udp/53".
func portList(ps []lang.Port) string {
	s := make([]string, len(ps))
	for i := range ps {
		s[i] = portText(ps[i : i+1])
	}
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
