package sim

import (
	"fmt"
	"net/netip"
	"time"

	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/lang"
)

// This file executes an *iptables.Ruleset the way x_tables does
// (net/ipv4/netfilter/ip_tables.c, ipt_do_table): the ruleset of the
// packet's family, the nat table's PREROUTING for the first packet of a
// flow, then the filter table's INPUT or FORWARD; in a rule the IP header
// fields first, then the matches in the order iptables-restore gives them
// (tcp/multiport, addrtype, conntrack, recent, limit), each stopping the
// rule when it fails; then the target. User chains return at their end,
// builtin chains apply their policy.

// xt_limit's credit arithmetic (net/netfilter/xt_limit.c): a rate is kept
// as an average interval in 1/10000 s (XT_LIMIT_SCALE); credits accrue at
// CREDITS_PER_JIFFY per jiffy, the largest power of two below
// 0xFFFFFFFF / (HZ*60*60*24).
const (
	xtLimitScale = 10000
	xtLimitBurst = 5
)

var creditsPerJiffy = func() uint32 {
	maxCPJ := uint32(0xFFFFFFFF / (HZ * 60 * 60 * 24))
	p := uint32(1)
	for p*2 <= maxCPJ {
		p *= 2
	}
	return p
}()

// user2credits converts an interval in 1/10000 s to credits, as the
// kernel does, dividing first when multiplying would overflow.
func user2credits(user uint32) uint32 {
	if user > 0xFFFFFFFF/(HZ*creditsPerJiffy) {
		return (user / xtLimitScale) * HZ * creditsPerJiffy
	}
	return (user * HZ * creditsPerJiffy) / xtLimitScale
}

type ilimit struct {
	cost, capacity uint32
	desc           string
}

type ilimitState struct {
	credit uint32
	prev   int64 // jiffies
}

// take runs limit_mt: credits accrue since the last packet (in 32-bit
// arithmetic, as the kernel's), capped; a packet that finds cost credits
// takes them and matches; one that does not takes none.
func (st *ilimitState) take(l *ilimit, j int64) bool {
	if j > st.prev {
		inc := uint32(uint64(j-st.prev) * uint64(creditsPerJiffy))
		st.credit += inc
		st.prev = j
	}
	if st.credit > l.capacity {
		st.credit = l.capacity
	}
	if st.credit >= l.cost {
		st.credit -= l.cost
		return true
	}
	return false
}

type irule struct {
	proto       lang.Proto
	src, dst    []netip.Prefix
	dports      []uint16
	tcpFlags    *iptables.TCPFlags
	ctstate     uint8
	hasCt       bool
	ctOrigDst   netip.Prefix
	ctOrigDport uint16
	dstLocal    bool
	recent      *irecent
	connlimit   *iconnlimit
	limit       int // index in iptEngine.limits, -1 none
	target      iptables.TargetKind
	chain       int
	logText     string
	dnatAddr    netip.Addr
	dnatPort    uint16
	origin      lang.Ref
	comment     string
}

type ichain struct {
	name      string
	builtin   bool
	policy    vkind
	policyMsg string
	rules     []irule
	disp      dispatch
}

type itable struct {
	chains []ichain
	byName map[string]int
}

type ifam struct {
	filter, nat         itable
	input, forward, pre int // chain indexes, -1 when absent
}

// iconnlimit is a connlimit match: its own tree of keys (the masked
// source), each with its list of connections (see conncount.go).
type iconnlimit struct {
	above int
	bits  int
	keys  map[netip.Addr]*ccList
}

// match counts the packet's connection and reports whether its key has
// more than above.
func (c *iconnlimit) match(s *Sim, p *pkt) bool {
	k := netip.PrefixFrom(p.src, c.bits).Masked().Addr()
	l := c.keys[k]
	if l == nil {
		l = newCCList(p.j) // insert_tree: a new key's list
		c.keys[k] = l
	}
	n := l.add(&s.ct, p)
	if s.opts.Explain {
		s.note("connlimit %s/%d: %d connections, above %d: %v", k, c.bits, n, c.above, n > c.above)
	}
	return n > c.above
}

type iptEngine struct {
	fam        [2]ifam
	connlimits []*iconnlimit
	lists      []*recentTable
	limits     []ilimit
	lstate     []ilimitState
}

func compileIptables(rs *iptables.Ruleset) (*iptEngine, error) {
	if rs == nil {
		return nil, fmt.Errorf("iptables: no ruleset")
	}
	e := &iptEngine{}
	lists := map[string]*recentTable{}
	for i, f := range []*iptables.Family{rs.V4, rs.V6} {
		fam := ifam{input: -1, forward: -1, pre: -1}
		if f != nil {
			for _, t := range f.Tables {
				var it *itable
				switch t.Name {
				case "filter":
					it = &fam.filter
				case "nat":
					it = &fam.nat
				default:
					return nil, fmt.Errorf("iptables: table %s is not simulated", t.Name)
				}
				if err := e.compileTable(it, t, i == 1, lists); err != nil {
					return nil, err
				}
			}
		}
		fam.input = builtinIndex(&fam.filter, "INPUT")
		fam.forward = builtinIndex(&fam.filter, "FORWARD")
		fam.pre = builtinIndex(&fam.nat, "PREROUTING")
		e.fam[i] = fam
	}
	e.reset()
	return e, nil
}

func builtinIndex(t *itable, name string) int {
	if i, ok := t.byName[name]; ok {
		return i
	}
	return -1
}

func (e *iptEngine) compileTable(it *itable, t *iptables.Table, v6 bool, lists map[string]*recentTable) error {
	it.byName = map[string]int{}
	for i, c := range t.Chains {
		if _, dup := it.byName[c.Name]; dup {
			return fmt.Errorf("iptables: chain %s defined twice in table %s", c.Name, t.Name)
		}
		it.byName[c.Name] = i
	}
	for _, c := range t.Chains {
		ic := ichain{name: c.Name, builtin: c.Builtin, policy: vAccept, policyMsg: "policy of chain " + c.Name}
		if c.Policy == "DROP" {
			ic.policy = vDrop
		}
		for _, r := range c.Rules {
			ir, err := e.compileRule(r, it, v6, lists)
			if err != nil {
				return fmt.Errorf("iptables: table %s chain %s: %v", t.Name, c.Name, err)
			}
			ic.rules = append(ic.rules, ir)
		}
		// A rule with --dport has -p tcp or udp, and what it matches
		// before the port (addresses, protocol) is pure: it is
		// port-guarded.
		guards := make([][]uint16, len(ic.rules))
		for i := range ic.rules {
			if d := ic.rules[i].dports; len(d) > 0 {
				guards[i] = d
			}
		}
		ic.disp.build(guards)
		it.chains = append(it.chains, ic)
	}
	return nil
}

var ctstateBits = map[string]uint8{
	"NEW": stNew, "ESTABLISHED": stEstablished, "RELATED": stRelated, "INVALID": stInvalid, "UNTRACKED": stUntracked,
}

func (e *iptEngine) compileRule(r *iptables.Rule, it *itable, v6 bool, lists map[string]*recentTable) (irule, error) {
	ir := irule{proto: r.Proto, dports: r.DPorts, ctOrigDport: r.CtOrigDport, dstLocal: r.DstLocal,
		limit: -1, target: r.Target.Kind, chain: -1, origin: r.Origin, comment: r.Comment}
	for _, p := range r.Src {
		ir.src = append(ir.src, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked())
	}
	for _, p := range r.Dst {
		ir.dst = append(ir.dst, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked())
	}
	if len(r.DPorts) > 0 && r.Proto != lang.TCP && r.Proto != lang.UDP {
		return irule{}, fmt.Errorf("--dport without -p tcp or udp")
	}
	if r.TCPFlags != nil {
		if r.Proto != lang.TCP {
			return irule{}, fmt.Errorf("--tcp-flags without -p tcp")
		}
		f := *r.TCPFlags
		ir.tcpFlags = &f
	}
	for _, s := range r.CtState {
		b, ok := ctstateBits[s]
		if !ok {
			return irule{}, fmt.Errorf("--ctstate %s is not simulated", s)
		}
		ir.ctstate |= b
		ir.hasCt = true
	}
	if r.CtOrigDst.IsValid() {
		ir.ctOrigDst = netip.PrefixFrom(r.CtOrigDst.Addr().Unmap(), r.CtOrigDst.Bits()).Masked()
	}
	if rc := r.Recent; rc != nil {
		t, ok := lists[rc.Name]
		if !ok {
			// The list is created by its first rule, which gives it its mask.
			t = newRecentTable(rc.Name)
			if rc.Shared {
				t.mask = [16]byte{}
			} else {
				t.setMask(rc.Mask, v6)
			}
			lists[rc.Name] = t
			e.lists = append(e.lists, t)
		}
		switch rc.Op {
		case iptables.Set, iptables.Remove:
			if rc.Seconds != 0 || rc.Hitcount != 0 || rc.Reap {
				return irule{}, fmt.Errorf("recent %s with --seconds, --hitcount or --reap is refused by the kernel", rc.Op)
			}
		case iptables.Rcheck, iptables.Update:
		default:
			return irule{}, fmt.Errorf("recent: unknown command %q", rc.Op)
		}
		if rc.Reap && rc.Seconds == 0 {
			return irule{}, fmt.Errorf("recent --reap without --seconds is refused by the kernel")
		}
		if rc.Hitcount < 0 || rc.Hitcount > iptables.MaxHitcount {
			return irule{}, fmt.Errorf("recent --hitcount %d is refused by the kernel", rc.Hitcount)
		}
		t.grow(rc.Hitcount)
		ir.recent = &irecent{list: t, op: rc.Op, seconds: int64(rc.Seconds) * HZ, secs: rc.Seconds,
			hitcount: rc.Hitcount, reap: rc.Reap, invert: rc.Invert}
	}
	if cl := r.Connlimit; cl != nil {
		bits := 32
		if v6 {
			bits = 128
		}
		if cl.Mask < 0 || cl.Mask > bits || cl.Above < 0 {
			return irule{}, fmt.Errorf("connlimit --connlimit-above %d --connlimit-mask %d is refused by the kernel", cl.Above, cl.Mask)
		}
		ir.connlimit = &iconnlimit{above: cl.Above, bits: cl.Mask}
		e.connlimits = append(e.connlimits, ir.connlimit)
	}
	if l := r.Limit; l != nil {
		il, err := newIlimit(l)
		if err != nil {
			return irule{}, err
		}
		e.limits = append(e.limits, il)
		ir.limit = len(e.limits) - 1
	}
	switch r.Target.Kind {
	case iptables.ACCEPT, iptables.DROP, iptables.REJECT, iptables.RETURN, iptables.NONE:
	case iptables.LOG:
		ir.logText = fmt.Sprintf("LOG %q level %s", r.Target.LogPrefix, r.Target.LogLevel)
	case iptables.DNAT:
		if !r.Target.ToDest.IsValid() {
			return irule{}, fmt.Errorf("DNAT without --to-destination")
		}
		ir.dnatAddr, ir.dnatPort = r.Target.ToDest.Unmap(), r.Target.ToPort
	case iptables.JUMP:
		ci, ok := it.byName[r.Target.Chain]
		if !ok {
			return irule{}, fmt.Errorf("jump to unknown chain %s", r.Target.Chain)
		}
		ir.chain = ci
	default:
		return irule{}, fmt.Errorf("target %s is not simulated", r.Target.Kind)
	}
	return ir, nil
}

func newIlimit(l *iptables.Limit) (ilimit, error) {
	mult := map[string]uint32{"second": 1, "sec": 1, "s": 1, "minute": 60, "min": 60, "m": 60,
		"hour": 3600, "h": 3600, "day": 86400, "d": 86400}[l.Unit]
	if mult == 0 || l.Rate <= 0 {
		return ilimit{}, fmt.Errorf("limit %d/%s is not valid", l.Rate, l.Unit)
	}
	// libxt_limit parse_rate: avg = XT_LIMIT_SCALE * mult / rate.
	avg := uint32(xtLimitScale) * mult / uint32(l.Rate)
	if avg == 0 {
		return ilimit{}, fmt.Errorf("limit %d/%s is too fast for xt_limit", l.Rate, l.Unit)
	}
	burst := uint32(l.Burst)
	if burst == 0 {
		burst = xtLimitBurst
	}
	if user2credits(avg*burst) < user2credits(avg) {
		return ilimit{}, fmt.Errorf("limit %d/%s burst %d overflows xt_limit", l.Rate, l.Unit, burst)
	}
	return ilimit{cost: user2credits(avg), capacity: user2credits(avg * burst),
		desc: fmt.Sprintf("%d/%s burst %d", l.Rate, l.Unit, burst)}, nil
}

func (e *iptEngine) reset() {
	for _, t := range e.lists {
		t.reset()
	}
	for _, c := range e.connlimits {
		c.keys = map[netip.Addr]*ccList{}
	}
	e.lstate = make([]ilimitState, len(e.limits))
	for i, l := range e.limits {
		// Credits full when the rule is loaded (limit_mt_check).
		e.lstate[i] = ilimitState{credit: l.capacity}
	}
}

func (e *iptEngine) gc(*Sim, time.Duration) {}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matches runs a rule's matches in order.
func (e *iptEngine) matches(s *Sim, p *pkt, r *irule) bool {
	if len(r.src) > 0 && !inPrefixes(r.src, p.src) {
		return false
	}
	if len(r.dst) > 0 && !inPrefixes(r.dst, p.dst) {
		return false
	}
	if r.proto != 0 && r.proto != p.proto {
		return false
	}
	if len(r.dports) > 0 && !hasPort(r.dports, p.dport) {
		return false
	}
	if f := r.tcpFlags; f != nil && (p.flags&f.Mask == f.Comp) == f.Invert {
		return false
	}
	if r.dstLocal && !s.isLocal(p.dst, p.dnat) {
		return false
	}
	if r.hasCt && r.ctstate&p.state == 0 {
		return false
	}
	if r.ctOrigDst.IsValid() || r.ctOrigDport != 0 {
		// xt_conntrack: without a conntrack entry only --ctstate can match.
		if p.c == nil {
			return false
		}
		if r.ctOrigDst.IsValid() && !r.ctOrigDst.Contains(p.c.orig.dst) {
			return false
		}
		if r.ctOrigDport != 0 && p.c.orig.dport != r.ctOrigDport {
			return false
		}
	}
	if r.recent != nil && !r.recent.match(s, p) {
		return false
	}
	if r.connlimit != nil && !r.connlimit.match(s, p) {
		return false
	}
	if r.limit >= 0 {
		l := &e.limits[r.limit]
		ok := e.lstate[r.limit].take(l, p.j)
		if s.opts.Explain {
			if ok {
				s.note("limit %s: credit taken", l.desc)
			} else {
				s.note("limit %s: no credit left", l.desc)
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// runChain runs a builtin chain with its jumps and returns accept, drop
// or reject, recording the deciding rule.
func (e *iptEngine) runChain(s *Sim, p *pkt, t *itable, base int) vkind {
	var stack [32]jumpFrame
	sp := 0
	ci, ri := base, 0
	// order lists the rules of the chain the packet can match (nil: all);
	// ri counts along it. The packet's port does not change inside a
	// chain (DNAT ends it), so the choice made on entry holds.
	order := t.chains[ci].disp.pick(p)
	for {
		c := &t.chains[ci]
		n := len(c.rules)
		if order != nil {
			n = len(order)
		}
		if ri >= n {
			if sp == 0 {
				s.decide(c.policyMsg)
				return c.policy
			}
			sp--
			ci, ri, order = int(stack[sp].chain), int(stack[sp].rule), nil
			if !stack[sp].all {
				order = t.chains[ci].disp.rest
			}
			continue
		}
		r := &c.rules[ri]
		if order != nil {
			r = &c.rules[order[ri]]
		}
		ri++
		if !e.matches(s, p, r) {
			continue
		}
		switch r.target {
		case iptables.NONE:
		case iptables.LOG:
			if s.opts.Explain {
				s.note("%s", r.logText)
			}
		case iptables.ACCEPT:
			s.decideRule(r.origin, r.comment)
			return vAccept
		case iptables.DROP:
			s.decideRule(r.origin, r.comment)
			return vDrop
		case iptables.REJECT:
			s.decideRule(r.origin, r.comment)
			return vReject
		case iptables.DNAT:
			p.dst = r.dnatAddr
			if r.dnatPort != 0 {
				p.dport = r.dnatPort
			}
			p.dnat = true
			if s.opts.Explain {
				s.note("DNAT to %s", netip.AddrPortFrom(p.dst, p.dport))
			}
			return vAccept
		case iptables.RETURN:
			if sp == 0 {
				s.decide(t.chains[base].policyMsg)
				return t.chains[base].policy
			}
			sp--
			ci, ri, order = int(stack[sp].chain), int(stack[sp].rule), nil
			if !stack[sp].all {
				order = t.chains[ci].disp.rest
			}
		case iptables.JUMP:
			if sp == len(stack) {
				s.decideRule(r.origin, "jump stack overflow")
				return vDrop
			}
			next := t.chains[r.chain].disp.pick(p)
			if next != nil && len(next) == 0 {
				// The packet can match none of the target's rules:
				// the jump returns at once.
				break
			}
			stack[sp] = jumpFrame{int32(ci), int32(ri), order == nil}
			sp++
			ci, ri, order = r.chain, 0, next
		}
	}
}

func (e *iptEngine) family(p *pkt) *ifam {
	if p.v6 {
		return &e.fam[1]
	}
	return &e.fam[0]
}

func verdictOf(v vkind) lang.Verdict {
	switch v {
	case vDrop:
		return lang.Drop
	case vReject:
		return lang.Reject
	}
	return lang.Accept
}

func (e *iptEngine) prerouting(s *Sim, p *pkt) (lang.Verdict, bool) {
	f := e.family(p)
	// The nat table sees only the first packet of a flow.
	if f.pre < 0 || !p.fresh {
		return lang.Accept, false
	}
	v := verdictOf(e.runChain(s, p, &f.nat, f.pre))
	if v != lang.Accept {
		return v, true
	}
	s.res.Rule, s.res.Comment = lang.Ref{}, ""
	return v, false
}

func (e *iptEngine) filter(s *Sim, p *pkt, h Hook) lang.Verdict {
	f := e.family(p)
	ci := f.input
	if h == HookForward {
		ci = f.forward
	}
	if ci < 0 {
		s.decide("no chain on this hook")
		return lang.Accept
	}
	return verdictOf(e.runChain(s, p, &f.filter, ci))
}
