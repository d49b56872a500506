package audit

import (
	"fmt"
	"net/netip"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
	"kwl.dev/kwl/sim/capture"
)

// victim4 is the address an attacker forges: a client of the policy.
var victim4 = netip.MustParseAddr("203.0.113.10")

// timeline replays packets through a fresh simulator and returns the
// verdict of the last one.
type timeline struct {
	s   *sim.Sim
	n   int
	now time.Duration
}

func newTimeline(p *lang.Policy, backend string) (*timeline, error) {
	s, diags := sim.New(backend, p, sim.Options{Hosts: []netip.Addr{firewall4}})
	if s == nil {
		return nil, fmt.Errorf("%v", diags)
	}
	return &timeline{s: s}, nil
}

// send sends a connection attempt (a SYN, or a datagram) from src to
// port, 100 ms after the previous packet.
func (tl *timeline) send(src netip.Addr, port lang.Port) lang.Verdict {
	tl.n++
	tl.now += 100 * time.Millisecond
	pk := probe(tl.n, tl.now, src, port, capture.SYN)
	v, _, _ := tl.s.Decide(&pk)
	return v
}

// knock sends a door's sequence from src.
func (tl *timeline) knock(src netip.Addr, d *lang.Door) {
	for _, k := range d.Sequence {
		tl.send(src, k)
	}
}

// Spoofing runs the attacks of forged source addresses, which need no
// reply: a forged knock on a close port (or a closing sequence) from a
// victim's address closes the victim's door; forged connections from a
// victim's address to a limited service get the victim banned.
func Spoofing(p *lang.Policy, o Options) ([]Finding, error) {
	var out []Finding
	for _, d := range p.Doors {
		if d.Family == lang.IPv6 || len(d.From) > 0 || d.Service.Forward.IsValid() {
			continue
		}
		svc := d.Service.Ports[0]
		for _, r := range p.Revokes {
			if r.Service != d.Service || r.Family == lang.IPv6 || len(r.From) > 0 {
				continue
			}
			close, what := r.Sequence, "a closing sequence forged with a victim's address closes its door"
			if len(r.Ports) > 0 {
				close, what = r.Ports[:1], fmt.Sprintf("a SYN to close port %s forged with a victim's address closes its door", portText(r.Ports))
			}
			tl, err := newTimeline(p, o.Backend)
			if err != nil {
				return nil, err
			}
			tl.knock(victim4, d)
			for _, c := range close {
				tl.send(victim4, c)
			}
			if tl.send(victim4, svc) != lang.Accept {
				out = append(out, Finding{Ref: r.Ref, Service: d.Service.Name, Backend: o.Backend, Effect: Closes, Attack: what, Opened: 1, Low: 1, High: 1, Trials: 1,
					Hint: "close ports and closing knocks can be forged by anyone who knows the victim's address: drop them if the door's lifetime is short enough"})
			}
		}
	}
	for _, l := range p.Limits {
		if l.Ban == 0 || l.Concurrent || l.Family == lang.IPv6 || l.Service.Forward.IsValid() {
			continue
		}
		svc := l.Service.Ports[0]
		tl, err := newTimeline(p, o.Backend)
		if err != nil {
			return nil, err
		}
		// The attacker forges the victim's knocks when the service is
		// guarded (the limit counts only what a door lets in), then one
		// connection more than the limit admits.
		door := firstDoor(p, l.Service)
		if door != nil {
			tl.knock(victim4, door)
		}
		for range l.Count + 1 {
			tl.send(victim4, svc)
		}
		// The victim itself knocks and connects: after the limit's
		// window when the ban outlasts it, so that only the ban refuses.
		if l.Ban > l.Window+time.Second {
			tl.now += l.Window + 500*time.Millisecond
		}
		if door != nil {
			tl.knock(victim4, door)
		}
		if tl.send(victim4, svc) != lang.Accept {
			what := fmt.Sprintf("%d forged connections from the victim's address", l.Count+1)
			if door != nil {
				what += ", after its forged knocks"
			}
			hint := "a ban counts forged SYNs as well: a longer window or a higher count makes it costlier; per source/24 bans the victim's whole /24"
			out = append(out, Finding{Ref: l.Ref, Service: l.Service.Name, Backend: o.Backend, Effect: Bans, Attack: what, Opened: 1, Low: 1, High: 1, Trials: 1, Hint: hint})
		}
	}
	return out, nil
}

// firstDoor returns the first IPv4 door of s that anyone may knock, or nil.
func firstDoor(p *lang.Policy, s *lang.Service) *lang.Door {
	for _, d := range p.Doors {
		if d.Service == s && d.Family != lang.IPv6 && len(d.From) == 0 {
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
	var out []Finding
	n := 65535
	if o.Backend == "iptables" {
		n = 100
	}
	for _, d := range p.Doors {
		if d.Family == lang.IPv6 || len(d.From) > 0 || d.Service.Forward.IsValid() {
			continue
		}
		svc := d.Service.Ports[0]
		tl, err := newTimeline(p, o.Backend)
		if err != nil {
			return nil, err
		}
		if o.Backend == "iptables" {
			tl.knock(victim4, d) // its door opens, then is evicted
		}
		for i := range n {
			src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			for _, k := range d.Sequence {
				// All at one instant: the time of the victim's door.
				tl.n++
				pk := probe(tl.n, tl.now, src, k, capture.SYN)
				tl.s.Decide(&pk)
			}
		}
		if o.Backend == "nft" {
			tl.knock(victim4, d)
		}
		if tl.send(victim4, svc) != lang.Accept {
			what := fmt.Sprintf("forged knocks from %d distinct sources fill the door set; a real client's knock then opens nothing", n)
			hint := "a door set holds 65,535 sources: forged knocks are cheap, so keep the knock ports secret and the lifetime short"
			if o.Backend == "iptables" {
				what = fmt.Sprintf("forged knocks from %d other sources evict an open door from its recent list", n)
				hint = "xt_recent keeps 100 sources per list (ip_list_tot, a module parameter): raise it, or use the nft backend"
			}
			out = append(out, Finding{Ref: d.Ref, Service: d.Service.Name, Backend: o.Backend, Effect: Closes, Attack: what, Opened: 1, Low: 1, High: 1, Trials: 1, Hint: hint})
		}
	}
	return out, nil
}
