package audit

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
)

// A timeline replays an attack's packets through a fresh simulator, in
// time order, and keeps them when the audit emits its attacks.
type timeline struct {
	s    *sim.Sim
	n    int
	now  time.Duration
	keep bool
	pkts []capture.Packet
}

// newTimeline returns a timeline on a fresh simulator of p: o's, reset,
// when withSim made one (the timeline before it is then over).
func newTimeline(p *lang.Policy, o Options) (*timeline, error) {
	if o.sim != nil && o.simOf == p {
		o.sim.Reset()
		return &timeline{s: o.sim, keep: o.Keep}, nil
	}
	s, diags := sim.New(o.Backend, p, simOptions)
	if s == nil {
		return nil, fmt.Errorf("%v", diags)
	}
	return &timeline{s: s, keep: o.Keep}, nil
}

// at sends a packet from src to port at t (TCP with flags) and returns
// its verdict.
func (tl *timeline) at(t time.Duration, src netip.Addr, port lang.Port, flags capture.TCPFlags) lang.Verdict {
	tl.n++
	tl.now = t
	pk := probe(tl.n, t, src, port, flags)
	if tl.keep {
		tl.pkts = append(tl.pkts, pk)
	}
	v, _, _ := tl.s.Decide(&pk)
	return v
}

// send sends a connection attempt (a SYN, or a datagram) from src to
// port, 100 ms after the previous packet.
func (tl *timeline) send(src netip.Addr, port lang.Port) lang.Verdict {
	return tl.at(tl.now+100*time.Millisecond, src, port, capture.SYN)
}

// knock sends a door's sequence from src: a secret door's, the token of
// the time (token), which it returns.
func (tl *timeline) knock(src netip.Addr, d *lang.Door) (tok []byte) {
	if d.Secret != nil {
		t, err := tl.s.TokenAt(d.Secret.Path, tl.now+100*time.Millisecond)
		if err == nil {
			tl.token(src, d.Sequence[0], t[:])
		}
		return t[:]
	}
	for _, k := range d.Sequence {
		tl.send(src, k)
	}
	return nil
}

// token sends, 100 ms after the previous packet, a datagram from src to
// port with tok as its payload.
func (tl *timeline) token(src netip.Addr, port lang.Port, tok []byte) lang.Verdict {
	tl.n++
	tl.now += 100 * time.Millisecond
	pk := probe(tl.n, tl.now, src, port, 0)
	pk.UDPLen = uint16(nft.UDPHeader + len(tok))
	pk.PayloadN = uint8(copy(pk.Payload[:], tok))
	pk.Len = 20 + int(pk.UDPLen)
	if !src.Is4() {
		pk.Len += 20
	}
	if tl.keep {
		tl.pkts = append(tl.pkts, pk)
	}
	return tl.s.Eval(&pk).Verdict
}

// Spoofing runs the attacks of forged source addresses, which need no
// reply:
//
//   - a forged knock on a close port (or a closing sequence) from a
//     victim's address closes the victim's door;
//   - a forged packet from a victim's address between its knocks starts
//     its sequence over;
//   - forged connections from a victim's address to a limited service get
//     the victim banned;
//   - forged connections from other addresses use up a limit the victim
//     shares with them (one for every source, or per source/24).
func Spoofing(p *lang.Policy, o Options) ([]Finding, error) {
	o = withSim(p, o)
	var out []Finding
	keep := func(f Finding, tl *timeline) {
		f.Backend, f.Opened, f.Low, f.High, f.Trials = o.Backend, 1, 1, 1, 1
		f.Packets = tl.pkts
		out = append(out, f)
	}
	for _, d := range p.Doors {
		victim, ok := source(d.Family, d.From, victim4, victim6)
		if !ok {
			continue
		}
		svc := d.Service.Ports[0]
		for _, r := range p.Revokes {
			if r.Service != d.Service || !admits(r.Family, r.From, victim) {
				continue
			}
			close, what, kw := r.Sequence, "a closing sequence forged with a victim's address closes its door", "knock"
			if len(r.Ports) > 0 {
				close, what, kw = r.Ports[:1], fmt.Sprintf("a SYN to close port %s forged with a victim's address closes its door", portText(r.Ports)), "close"
			}
			tl, err := newTimeline(p, o)
			if err != nil {
				return nil, err
			}
			tl.knock(victim, d)
			for _, c := range close {
				tl.send(victim, c)
			}
			if tl.send(victim, svc) != lang.Accept {
				keep(Finding{Ref: r.Ref, Statement: kw, Service: d.Service.Name, Effect: Closes, Attack: what,
					Hint: "close ports and closing knocks can be forged by anyone who knows the victim's address: drop them if the door's lifetime is short enough"}, tl)
			}
		}
		if len(d.Sequence) > 1 {
			f, tl, err := resetSpoof(p, o, d, victim)
			if err != nil {
				return nil, err
			}
			if tl != nil {
				keep(f, tl)
			}
		}
	}
	for _, l := range p.Limits {
		if l.Concurrent {
			continue
		}
		victim, _ := source(l.Family, nil, victim4, victim6)
		door := firstDoor(p, l.Service, victim)
		if l.Service.Guarded && door == nil {
			continue
		}
		if l.Ban > 0 {
			tl, err := banSpoof(p, o, l, door, victim)
			if err != nil {
				return nil, err
			}
			if tl != nil {
				what := fmt.Sprintf("%d forged connections from the victim's address", l.Count+1)
				if door != nil {
					what += ", after its forged knocks,"
				}
				hint := "a ban counts forged SYNs as well: a longer window or a higher count makes it costlier; per source/24 bans the victim's whole /24"
				keep(Finding{Ref: l.Ref, Statement: "limit", Service: l.Service.Name, Effect: Bans, Attack: what, Hint: hint}, tl)
			}
		}
		if shared, others := neighbour(l, victim); shared {
			tl, err := newTimeline(p, o)
			if err != nil {
				return nil, err
			}
			for range l.Count {
				if door != nil {
					tl.knock(others, door)
				}
				tl.send(others, l.Service.Ports[0])
			}
			if door != nil {
				tl.knock(victim, door)
			}
			if tl.send(victim, l.Service.Ports[0]) != lang.Accept {
				what := fmt.Sprintf("%d forged connections from %s, which shares the limit with the victim, use it up: the victim is refused", l.Count, others)
				hint := "a shared limit is a budget anyone may spend with forged SYNs: per source gives each address its own"
				if l.PerSource {
					hint = fmt.Sprintf("per source/%d shares one budget among a whole prefix, forged SYNs from any of it included: a longer prefix narrows it", l.Mask4)
				}
				keep(Finding{Ref: l.Ref, Statement: "limit", Service: l.Service.Name, Effect: Closes, Attack: what, Hint: hint}, tl)
			}
		}
	}
	return out, nil
}

// resetSpoof forges, between a victim's first and second knock of d, a
// packet from the victim's address to every port the policy names and
// to one it does not, and returns the timeline of the first that keeps
// the victim's door shut, nil when none does (or when the victim's own
// knocks do not open it).
func resetSpoof(p *lang.Policy, o Options, d *lang.Door, victim netip.Addr) (Finding, *timeline, error) {
	ports := policyPorts(p)
	ports = append(ports, lang.Port{Proto: lang.TCP, Num: otherPort(ports)})
	svc := d.Service.Ports[0]
	try := func(forged *lang.Port) (bool, *timeline, error) {
		tl, err := newTimeline(p, o)
		if err != nil {
			return false, nil, err
		}
		for i, k := range d.Sequence {
			tl.send(victim, k)
			if i == 0 && forged != nil {
				tl.at(tl.now+50*time.Millisecond, victim, *forged, capture.SYN)
			}
		}
		return tl.send(victim, svc) == lang.Accept, tl, nil
	}
	if ok, _, err := try(nil); err != nil || !ok {
		return Finding{}, nil, err
	}
	var first *timeline
	var resets []lang.Port
	for _, pt := range ports {
		if pt == svc {
			continue
		}
		ok, tl, err := try(&pt)
		if err != nil {
			return Finding{}, nil, err
		}
		if !ok {
			resets = append(resets, pt)
			if first == nil {
				first = tl
			}
		}
	}
	if first == nil {
		return Finding{}, nil, nil
	}
	what := fmt.Sprintf("a forged SYN to %s from the victim's address, between its knocks, starts its sequence over", resets[0])
	if len(resets) > 1 {
		what += fmt.Sprintf(" (%d ports do)", len(resets))
	}
	return Finding{Ref: d.Ref, Statement: "knock", Service: d.Service.Name, Effect: Closes, Attack: what,
		Hint: "anyone who knows a client's address can keep its sequence from completing: fewer reset rules (no strict, no exclusive) or a shorter sequence make this harder"}, first, nil
}

// banSpoof forges, from the victim's address, one connection more than
// l admits (after the victim's knocks when the service is guarded), and
// returns the timeline when the victim is then refused, nil otherwise.
func banSpoof(p *lang.Policy, o Options, l *lang.Limit, door *lang.Door, victim netip.Addr) (*timeline, error) {
	svc := l.Service.Ports[0]
	tl, err := newTimeline(p, o)
	if err != nil {
		return nil, err
	}
	if door != nil {
		tl.knock(victim, door)
	}
	for range l.Count + 1 {
		tl.send(victim, svc)
	}
	// The victim itself knocks and connects: after the limit's window
	// when the ban outlasts it, so that only the ban refuses.
	if l.Ban > l.Window+time.Second {
		tl.now += l.Window + 500*time.Millisecond
	}
	if door != nil {
		tl.knock(victim, door)
	}
	if tl.send(victim, svc) == lang.Accept {
		return nil, nil
	}
	return tl, nil
}

// neighbour returns another address that shares l's counter with the
// victim: any other for a limit of every source, one in the victim's
// prefix for per source/N. shared is false when the victim's counter is
// its own.
func neighbour(l *lang.Limit, victim netip.Addr) (shared bool, other netip.Addr) {
	b := victim.AsSlice()
	if !l.PerSource {
		b[len(b)-2] ^= 0x40 // another /24, another /64 ... any other
	} else if bits := map[bool]int{true: l.Mask4, false: l.Mask6}[victim.Is4()]; bits < victim.BitLen() {
		b[len(b)-1] ^= 1 // the same prefix: /31 at most
	} else {
		return false, netip.Addr{}
	}
	other, _ = netip.AddrFromSlice(b)
	return true, other
}

// admits reports whether a statement of family f and sources from
// applies to packets from a.
func admits(f lang.Family, from []netip.Prefix, a netip.Addr) bool {
	if f == lang.IPv4 && !a.Is4() || f == lang.IPv6 && a.Is4() {
		return false
	}
	return len(from) == 0 || slices.ContainsFunc(from, func(pf netip.Prefix) bool { return pf.Contains(a) })
}

// firstDoor returns the first door of s that a may knock, or nil.
func firstDoor(p *lang.Policy, s *lang.Service, a netip.Addr) *lang.Door {
	for _, d := range p.Doors {
		if d.Service == s && admits(d.Family, d.From, a) {
			return d
		}
	}
	return nil
}

func portText(ps []lang.Port) string {
	if ps[0].Proto == lang.TCP {
		return fmt.Sprint(ps[0].Num)
	}
	return ps[0].String()
}

// Exhaustion runs the attacks that fill a door's store: knocks from as
// many distinct forged sources as the store keeps. On nft a door set
// holds 65,535 sources, and a knock that finds it full opens nothing; on
// iptables a recent list keeps 100 and evicts the least recently seen, an
// open door included. Either way a real client's knock then does not let
// it in: the finding says how many sources it took.
func Exhaustion(p *lang.Policy, o Options) ([]Finding, error) {
	o = withSim(p, o)
	var out []Finding
	n := 65535
	if o.Backend == "iptables" {
		n = 100
	}
	for _, d := range p.Doors {
		victim, ok := source(d.Family, d.From, victim4, victim6)
		if !ok {
			continue
		}
		flood, ok := floodSources(d, victim, n)
		if !ok {
			continue // too few keys to fill the store
		}
		svc := d.Service.Ports[0]
		tl, err := newTimeline(p, o)
		if err != nil {
			return nil, err
		}
		if o.Backend == "iptables" {
			tl.knock(victim, d) // its door opens, then is evicted
		}
		for i := range n {
			src := flood(i)
			for _, k := range d.Sequence {
				// All at one instant: the time of the victim's door.
				tl.at(tl.now, src, k, capture.SYN)
			}
		}
		if o.Backend == "nft" {
			tl.knock(victim, d)
		}
		if tl.send(victim, svc) != lang.Accept {
			what := fmt.Sprintf("forged knocks from %d distinct sources fill the door set; a real client's knock then opens nothing", n)
			hint := "a door set holds 65,535 sources: forged knocks are cheap, so keep the knock ports secret and the lifetime short"
			if o.Backend == "iptables" {
				what = fmt.Sprintf("forged knocks from %d other sources evict an open door from its recent list", n)
				hint = "xt_recent keeps 100 sources per list (ip_list_tot, a module parameter): raise it, or use the nft backend"
			}
			out = append(out, Finding{Ref: d.Ref, Statement: "knock", Service: d.Service.Name, Backend: o.Backend, Effect: Closes, Attack: what, Opened: 1, Low: 1, High: 1, Trials: 1,
				Hint: hint, Packets: tl.pkts})
		}
	}
	return out, nil
}

// floodSources returns the i-th of n forged sources that each take a key
// of d's store of their own (another prefix when the door is per
// source/N), none the victim's, all in d's from list when it has one:
// the prefixes after the victim's, in its from list's prefix (or the
// whole family). ok is false when there are fewer than n such keys.
func floodSources(d *lang.Door, victim netip.Addr, n int) (func(int) netip.Addr, bool) {
	mask, base := d.Mask4, netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	if victim.Is6() {
		mask, base = d.Mask6, netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	for _, pf := range d.From {
		if pf.Contains(victim) {
			base = pf.Masked()
		}
	}
	free := mask - base.Bits() // the key bits an attacker may choose
	if free < 0 || free < 62 && 1<<free < n+1 {
		return nil, false
	}
	shift := uint(victim.BitLen() - mask)
	num := func(a netip.Addr) *big.Int { b := a.As16(); return new(big.Int).SetBytes(b[:]) }
	start := num(base.Addr())
	own := new(big.Int).Rsh(new(big.Int).Sub(num(victim), start), shift) // the victim's key
	keys := new(big.Int).Lsh(big.NewInt(1), uint(free))
	return func(i int) netip.Addr {
		k := new(big.Int).Add(own, big.NewInt(int64(i+1)))
		k.Mod(k, keys)
		x := k.Lsh(k, shift).Add(k, start)
		var b [16]byte
		x.FillBytes(b[:])
		a := netip.AddrFrom16(b)
		if victim.Is4() {
			a = a.Unmap()
		}
		return a
	}, true
}
