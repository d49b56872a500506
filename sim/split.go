package sim

import (
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// A Split divides packets into two parts that a ruleset keeps apart, so
// that each part can be evaluated by a Sim of its own, on a core of its
// own, with the results one Sim evaluating all packets would give.
//
// A packet is inert when it is neither TCP nor UDP, or when neither of
// its ports is one that a rule or a NAT binding of the ruleset names
// (the ports of the rules that dispatch skips, see dispatch.go, and of
// the rules that require a flow's original destination port). Its
// flow then holds inert packets only, in both directions: flows are
// keyed by their ports, so an inert flow and any other never share a
// conntrack entry. A Split exists only for a ruleset in which every rule
// an inert packet can reach is pure (it reads and writes no set, list or
// bucket and does no NAT): inert packets then change nothing the other
// packets read, and read nothing they change. What is left in common is
// the clock, which each Sim takes from its own packets; the state it
// drives (timeouts, set garbage collection) is only ever read by the
// rules of the part that owns it.
//
// Explanations are not kept apart: a garbage collection that one Sim
// notes on an inert packet, the other would note on the next packet of
// its own part. Split is for evaluation without Options.Explain.
type Split struct {
	ports [1 << 16 / 64]uint64 // bit per port named by the ruleset
}

// Split returns the ruleset's split, or false when some rule an inert
// packet could reach is not pure, so that the packets cannot be divided.
// The Split does not change and is safe for concurrent use.
func (s *Sim) Split() (*Split, bool) {
	sp := &Split{}
	switch e := s.eng.(type) {
	case *nftEngine:
		for ci := range e.chains {
			c := &e.chains[ci]
			for _, p := range c.disp.ports {
				sp.add(p)
			}
			for ri := range c.rules {
				for _, ex := range c.rules[ri].exprs {
					if ex.kind == exNAT && ex.natPort != 0 {
						sp.add(ex.natPort)
					}
				}
				for _, p := range c.rules[ri].leadingPorts(fCtOrigDport) {
					sp.add(p)
				}
			}
		}
		pure := reach(len(e.chains), func(ci int, visit func(int) bool) bool {
			c := &e.chains[ci]
			for _, ri := range c.disp.rest {
				if c.rules[ri].leadingPorts(fCtOrigDport) != nil {
					continue // not for an inert packet's flow
				}
				for _, ex := range c.rules[ri].exprs {
					switch ex.kind {
					case exLookup, exDynset, exLimit, exNAT:
						return false
					case exVerdict:
						if (ex.verdict == vJump || ex.verdict == vGoto) && !visit(ex.target) {
							return false
						}
					}
				}
			}
			return true
		})
		for ci := range e.chains {
			if e.chains[ci].base && !pure(ci) {
				return nil, false
			}
		}
	case *iptEngine:
		for fi := range e.fam {
			for _, t := range []*itable{&e.fam[fi].filter, &e.fam[fi].nat} {
				for ci := range t.chains {
					c := &t.chains[ci]
					for _, p := range c.disp.ports {
						sp.add(p)
					}
					for ri := range c.rules {
						if r := &c.rules[ri]; r.target == iptables.DNAT && r.dnatPort != 0 {
							sp.add(r.dnatPort)
						}
						if r := &c.rules[ri]; r.ctOrigDport != 0 {
							sp.add(r.ctOrigDport)
						}
					}
				}
				pure := reach(len(t.chains), func(ci int, visit func(int) bool) bool {
					c := &t.chains[ci]
					for _, ri := range c.disp.rest {
						r := &c.rules[ri]
						if r.ctOrigDport != 0 {
							continue // not for an inert packet's flow
						}
						if r.recent != nil || r.limit >= 0 || r.target == iptables.DNAT ||
							r.target == iptables.JUMP && !visit(r.chain) {
							return false
						}
					}
					return true
				})
				for ci := range t.chains {
					if t.chains[ci].builtin && !pure(ci) {
						return nil, false
					}
				}
			}
		}
	default:
		return nil, false
	}
	return sp, true
}

// reach returns a function that reports whether chain ci, and every chain
// it jumps to, is pure for a packet outside the chains' ports: check
// looks at one chain's rest rules and calls visit for the chains they
// jump to. A loop of jumps counts as pure; the kernel refuses one.
func reach(n int, check func(ci int, visit func(int) bool) bool) func(int) bool {
	state := make([]uint8, n) // 0 unknown, 1 being checked, 2 pure, 3 not
	var visit func(ci int) bool
	visit = func(ci int) bool {
		switch state[ci] {
		case 1, 2:
			return true
		case 3:
			return false
		}
		state[ci] = 1
		ok := check(ci, visit)
		state[ci] = 3
		if ok {
			state[ci] = 2
		}
		return ok
	}
	return visit
}

func (sp *Split) add(port uint16) { sp.ports[port/64] |= 1 << (port % 64) }

func (sp *Split) has(port uint16) bool { return sp.ports[port/64]&(1<<(port%64)) != 0 }

// Inert reports whether pk belongs to the inert part.
func (sp *Split) Inert(pk *capture.Packet) bool {
	if pk.Proto != lang.TCP && pk.Proto != lang.UDP {
		return true
	}
	return !sp.has(pk.SPort) && !sp.has(pk.DPort)
}
