package iptables

import (
	"fmt"
	"net/netip"

	"kwl.dev/kwl/compile/internal/plan"
	"kwl.dev/kwl/lang"
)

// serviceChain builds kwl-svc-NAME for the family, or nil when no
// statement gives the service a rule there. Rules, in order: allows
// accept; banned sources drop; a knocked service drops new connections
// from sources whose door is not open; a NEW TCP packet that is not a
// SYN is accepted as below, uncounted; limits drop what is over them;
// open doors (or, for a service that is only limited, any new connection
// under the limits) accept.
func (b *fam) serviceChain(s *lang.Service) *Chain {
	l := b.l
	doors := l.ids.DoorsOf(s)
	limits := l.ids.LimitsOf(s)
	allows := l.ids.AllowsOf(s)
	covers := func(fm lang.Family, from []netip.Prefix) bool {
		return plan.Covers(plan.Families(fm, from, s), b.f)
	}
	var famDoors []*lang.Door
	for _, d := range doors {
		if covers(d.Family, d.From) {
			famDoors = append(famDoors, d)
		}
	}
	var famLimits []*lang.Limit
	for _, lim := range limits {
		if covers(lim.Family, nil) {
			famLimits = append(famLimits, lim)
		}
	}
	guarded := s.Guarded || len(doors) > 0
	var famAllows []*lang.Allow
	for _, a := range allows {
		if covers(a.Family, a.From) {
			famAllows = append(famAllows, a)
		}
	}
	if len(famAllows) == 0 && len(famLimits) == 0 && !guarded {
		return nil
	}
	c := b.chain(b.filter, chainName("svc", l.ids.Service[s]))

	for _, a := range famAllows {
		b.emit(c, &Rule{Src: plan.From(a.From, b.f), Origin: a.Ref, Comment: comment("allow", s, a.Ref)},
			Target{Kind: ACCEPT}, a.Log, "allow", s)
	}

	for _, lim := range famLimits {
		if lim.Ban <= 0 {
			continue
		}
		b.refuse(c, &Rule{CtState: newState(), Recent: &Recent{Name: b.banList(lim), Op: Rcheck,
			Seconds: b.seconds(lim.Ban, lim.Pos, "the ban"), Mask: b.mask(lim)},
			Origin: lim.Ref, Comment: comment("ban", s, lim.Ref)}, lim.Reject, lim.Log, "limit", s)
	}

	if guarded {
		var origin lang.Ref
		var lg *lang.Log
		reject := false
		if len(doors) > 0 {
			origin, lg, reject = doors[0].Ref, doors[0].Log, doors[0].Reject
		}
		cm := fmt.Sprintf("%s is knocked: no open door, no entry", s.Name)
		switch len(famDoors) {
		case 0:
			b.refuse(c, &Rule{CtState: newState(), Origin: origin, Comment: cm}, reject, lg, "knock", s)
		case 1:
			d := famDoors[0]
			b.refuse(c, &Rule{CtState: newState(), Recent: b.doorCheck(d, true), Origin: origin, Comment: cm},
				reject, lg, "knock", s)
		default:
			// Not in any door: each open door returns, what is left is refused.
			g := b.chain(b.filter, chainName("guard", l.ids.Service[s]))
			for _, d := range famDoors {
				g.Rules = append(g.Rules, &Rule{Recent: b.doorCheck(d, false), Target: Target{Kind: RETURN}, Origin: d.Ref, Comment: comment("knock", s, d.Ref)})
			}
			b.refuse(g, &Rule{Origin: origin, Comment: cm}, reject, lg, "knock", s)
			c.Rules = append(c.Rules, &Rule{CtState: newState(), Target: Target{Kind: JUMP, Chain: g.Name}, Origin: origin, Comment: cm})
		}
	}

	// accepts emits the end of the chain, with the matches of lead when
	// it is set: open doors accept, or, for a service that is only
	// limited, any new connection that got past the limits.
	accepts := func(lead *Rule) {
		led := func(r *Rule) *Rule {
			if lead != nil {
				r.Proto, r.TCPFlags = lead.Proto, lead.TCPFlags
			}
			return r
		}
		if len(famDoors) > 0 {
			for _, d := range famDoors {
				t := Target{Kind: ACCEPT}
				if d.Once && lead == nil {
					t = Target{Kind: JUMP, Chain: b.onceChain(d).Name}
				}
				b.emit(c, led(&Rule{CtState: newState(), Recent: b.doorCheck(d, false), Origin: d.Ref, Comment: comment("knock", s, d.Ref)}),
					t, d.Log, "knock", s)
			}
		} else if !guarded && len(famLimits) > 0 {
			lim := famLimits[0]
			b.emit(c, led(&Rule{CtState: newState(), Origin: lim.Ref, Comment: comment("limit", s, lim.Ref)}),
				Target{Kind: ACCEPT}, nil, "limit", s)
		}
	}

	// Limits count connection attempts, and a single-use door admits
	// one. A TCP packet that conntrack calls NEW without being a SYN (a
	// flow picked up mid-stream, an ACK scan) goes past the limits to the
	// accepts, as if there were no limit, and leaves the door as it is.
	if (len(famLimits) > 0 || plan.AnyOnce(famDoors)) && plan.HasProto(s, lang.TCP) {
		accepts(&Rule{Proto: lang.TCP, TCPFlags: notSYN()})
	}
	for _, lim := range famLimits {
		b.limitRules(c, lim)
	}
	accepts(nil)
	return c
}

// onceChain is the chain that admits a connection through a single-use
// door: it removes the source from the door's list (--remove matches, the
// source being in it) and accepts.
func (b *fam) onceChain(d *lang.Door) *Chain {
	c := b.chain(b.filter, chainName("once", b.l.ids.Door[d]))
	if len(c.Rules) == 0 {
		c.Rules = append(c.Rules, &Rule{Recent: &Recent{Name: b.doorList(d), Op: Remove}, Target: Target{Kind: ACCEPT},
			Origin: d.Ref, Comment: comment("knock", d.Service, d.Ref)})
	}
	return c
}

// doorCheck is the door test: the source knocked within the lifetime
// (--rcheck --seconds: an inclusive window in jiffies).
func (b *fam) doorCheck(d *lang.Door, invert bool) *Recent {
	return &Recent{Name: b.doorList(d), Op: Rcheck, Seconds: b.seconds(d.Lifetime, d.Pos, "the door's lifetime"), Invert: invert}
}

func (b *fam) banList(lim *lang.Limit) string {
	return b.keyedList("ban", b.l.ids.Limit[lim], 0, plan.Mask(lim, b.f), false)
}

// mask is the --mask of a limit's lists. The kernel copies it when the
// list is created, so every rule on the list carries the same one.
func (b *fam) mask(lim *lang.Limit) int {
	m := plan.Mask(lim, b.f)
	if m >= b.f.Bits() {
		return 0
	}
	return m
}

// limitRules emits a limit: at most Count new connections admitted in
// any window of length Window, for each (masked) source or for all
// sources of the family together. A connection is refused when the
// list holds Count stamps within the window (--rcheck --seconds W
// --hitcount Count, whose window is closed: stamps >= now - W count),
// and stamped (--set) when it is admitted, so that only admitted
// connections count, as on nft. For all sources the list's --mask is
// 0.0.0.0 (or ::), so that every source is one entry.
func (b *fam) limitRules(c *Chain, lim *lang.Limit) {
	if lim.Concurrent {
		b.capRules(c, lim)
		return
	}
	s := lim.Service
	cm := comment("limit", s, lim.Ref)
	var over *Chain
	if lim.Ban > 0 {
		over = b.chain(b.filter, chainName("over", b.l.ids.Limit[lim]))
		if len(over.Rules) == 0 {
			over.Rules = append(over.Rules, &Rule{Recent: &Recent{Name: b.banList(lim), Op: Set, Mask: b.mask(lim)}, Origin: lim.Ref, Comment: comment("ban", s, lim.Ref)})
			b.refuse(over, &Rule{Origin: lim.Ref, Comment: cm}, lim.Reject, lim.Log, "limit", s)
		}
	}
	if !lim.PerSource && len(plan.Families(lim.Family, nil, s)) == 2 {
		b.l.warn(lim.Pos, lang.Error, lang.LintSharedFamilies,
			fmt.Sprintf("iptables cannot share one limit between IPv4 and IPv6: xt_recent keeps the two families' entries apart, so %d/%s would admit %d in any %s for each family",
				lim.Count, plan.Dur(lim.Window), lim.Count, plan.Dur(lim.Window)),
			"limit each family on its own (family ipv4, family ipv6), or use --backend nft")
		return
	}
	list := b.keyedList("lim", b.l.ids.Limit[lim], 0, plan.Mask(lim, b.f), !lim.PerSource)
	secs := b.seconds(lim.Window, lim.Pos, "the limit's window")
	key := func(op RecentOp) *Recent {
		r := &Recent{Name: list, Op: op, Mask: b.mask(lim), Shared: !lim.PerSource}
		if op == Rcheck {
			r.Seconds, r.Hitcount = secs, lim.Count
		}
		return r
	}
	if over != nil {
		c.Rules = append(c.Rules, &Rule{CtState: newState(), Recent: key(Rcheck), Target: Target{Kind: JUMP, Chain: over.Name}, Origin: lim.Ref, Comment: cm})
	} else {
		b.refuse(c, &Rule{CtState: newState(), Recent: key(Rcheck), Origin: lim.Ref, Comment: cm}, lim.Reject, lim.Log, "limit", s)
	}
	c.Rules = append(c.Rules, &Rule{CtState: newState(), Recent: key(Set), Origin: lim.Ref, Comment: cm})
	if lim.PerSource {
		b.l.warn(lim.Pos, lang.Note, lang.LintCapacity, fmt.Sprintf(
			"xt_recent keeps at most %d sources per list and evicts the least recently seen for a new one, whatever its age: %d other sources in quick succession wipe a source's count (and ban), and the limit starts afresh for it",
			ListTot, ListTot), "")
	}
}

// capRules emits a cap of concurrent connections: the connlimit match
// (xt_connlimit over nf_conncount, the counter of nft's ct count too)
// sends a new connection over the cap to a chain that bans the source
// (with ban), logs and refuses. The match adds the packet's connection
// to its key's list as it runs, so it runs once a packet, in one rule:
// the refusal, which may take two rules, is the chain's.
func (b *fam) capRules(c *Chain, lim *lang.Limit) {
	s := lim.Service
	cm := comment("limit", s, lim.Ref)
	if !lim.PerSource && len(plan.Families(lim.Family, nil, s)) == 2 {
		b.l.warn(lim.Pos, lang.Error, lang.LintSharedFamilies,
			fmt.Sprintf("iptables cannot share one cap between IPv4 and IPv6: connlimit counts each family's connections apart, so %d concurrent would admit %d for each family", lim.Count, lim.Count),
			"cap each family on its own (family ipv4, family ipv6), or use --backend nft")
		return
	}
	over := b.chain(b.filter, chainName("over", b.l.ids.Limit[lim]))
	if len(over.Rules) == 0 {
		if lim.Ban > 0 {
			over.Rules = append(over.Rules, &Rule{Recent: &Recent{Name: b.banList(lim), Op: Set, Mask: b.mask(lim)}, Origin: lim.Ref, Comment: comment("ban", s, lim.Ref)})
		}
		b.refuse(over, &Rule{Origin: lim.Ref, Comment: cm}, lim.Reject, lim.Log, "limit", s)
	}
	mask := plan.Mask(lim, b.f)
	if !lim.PerSource {
		mask = 0
	}
	c.Rules = append(c.Rules, &Rule{CtState: newState(), Connlimit: &Connlimit{Above: lim.Count, Mask: mask},
		Target: Target{Kind: JUMP, Chain: over.Name}, Origin: lim.Ref, Comment: cm})
}

// refuse emits r as a refusal of a new connection to s, after lg logs
// it: a drop, or with reject what a closed port answers, a TCP reset to
// TCP (-p tcp, as REJECT requires) and an ICMP or ICMPv6 port unreachable
// to anything else (ipt_REJECT.c, ip6t_REJECT.c). For a service of both
// protocols the reset comes first, in a copy of r after the log, so that
// a packet logs once; r's matches must then be stateless, since a packet
// may run them twice.
// banAllRules appends to the input chain the drops of a ban on all
// traffic: every packet of a banned source, on every port and protocol,
// after the established accept and before the knocks (see the nft
// backend's banAllRules).
func (b *fam) banAllRules(input *Chain) {
	for _, lim := range b.l.p.Limits {
		s := lim.Service
		if lim.Ban <= 0 || !lim.BanAll || !plan.Covers(plan.Families(lim.Family, nil, s), b.f) {
			continue
		}
		b.emit(input, &Rule{Recent: &Recent{Name: b.banList(lim), Op: Rcheck,
			Seconds: b.seconds(lim.Ban, lim.Pos, "the ban"), Mask: b.mask(lim)},
			Origin: lim.Ref, Comment: comment("ban", s, lim.Ref) + ": every port"}, Target{Kind: DROP}, lim.Log, "limit", s)
	}
}

func (b *fam) refuse(c *Chain, r *Rule, reject bool, lg *lang.Log, kind string, s *lang.Service) {
	if !reject {
		b.emit(c, r, Target{Kind: DROP}, lg, kind, s)
		return
	}
	reset := Target{Kind: REJECT, RejectWith: "tcp-reset"}
	if !plan.HasProto(s, lang.UDP) {
		r.Proto = lang.TCP
		b.emit(c, r, reset, lg, kind, s)
		return
	}
	unreach := Target{Kind: REJECT, RejectWith: "icmp-port-unreachable"}
	if b.f == plan.V6 {
		unreach.RejectWith = "icmp6-port-unreachable"
	}
	tcp := *r
	b.emit(c, r, unreach, lg, kind, s)
	if plan.HasProto(s, lang.TCP) {
		tcp.Proto, tcp.Target = lang.TCP, reset
		n := len(c.Rules) - 1
		c.Rules = append(c.Rules[:n], &tcp, c.Rules[n])
	}
}
