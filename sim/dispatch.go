package sim

import "kwl.dev/kwl/lang"

// dispatch lets a chain skip, for most packets, the rules that require a
// destination port: kwl's rules nearly all name one (a knock port, a
// service port), and most packets of a capture go to none of them.
// A rule is port-guarded when it cannot match unless the packet is TCP or
// UDP with its destination port in a list, and when everything it would
// evaluate before that test fails is free of side effects (pure matches:
// no set, list or bucket is read or written, no note is taken). Skipping
// such a rule for a packet outside its ports is then exactly what
// evaluating it would do.
type dispatch struct {
	// ports are the ports some port-guarded rule of the chain requires.
	ports []uint16
	// rest are the indexes of the rules that are not port-guarded, in
	// order: all a packet outside ports can match.
	rest []int32
}

// build fills d from each rule's guard (nil: not port-guarded).
func (d *dispatch) build(guards [][]uint16) {
	*d = dispatch{rest: []int32{}}
	for i, g := range guards {
		if g == nil {
			d.rest = append(d.rest, int32(i))
			continue
		}
		for _, p := range g {
			if !hasPort(d.ports, p) {
				d.ports = append(d.ports, p)
			}
		}
	}
}

// pick returns the rules a packet can match: nil means all of them.
func (d *dispatch) pick(p *pkt) []int32 {
	if len(d.ports) == 0 {
		return nil
	}
	if (p.proto == lang.TCP || p.proto == lang.UDP) && hasPort(d.ports, p.dport) {
		return nil
	}
	return d.rest
}

// jumpFrame is a return address on a jump stack: the chain, the place in
// its order, and whether the order was all the rules (else it was the
// chain's rest).
type jumpFrame struct {
	chain, rule int32
	all         bool
}
