package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"kwl.dev/kwl/compile/internal/plan"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// Priority is the priority of kwl's filter chains: before the host's own
// filter chains (priority 0, iptables-nft and most nft rulesets), so that a
// knock is recorded even when the host's firewall would drop it, and after
// conntrack (-200), so that ct state is known. A drop in any base chain is
// final; an accept only ends kwl's chain, and the host's chains still see
// the packet: kwl composes with the host's firewall.
const Priority = -10

// DNATPriority is the priority of the nat chain: dstnat.
const DNATPriority = -100

// DefaultSetSize is the size the kernel gives a set declared without one
// when a dynset binds it (nft_dynset_init: set->size = 0xffff), and so how
// many elements each of kwl's sets holds: kwl declares its sets without a
// size. A declared size costs kernel memory up front (about 2 MB per set
// for 65535, measured in slab), an unsized set only what its elements
// take. The simulator and deploy's carry-over of state use it too.
const DefaultSetSize = 0xffff

// Lower turns a checked policy into kwl's nftables ruleset: one table
// inet kwl. The diagnostics are warnings where nftables cannot give a
// statement its exact meaning, and errors where it cannot compile it; the
// warnings of every backend are compile.Warnings'.
//
// The input chain runs, in order: established and related packets accept;
// the knock chain (state updates of every knock, sequence and close
// statement, in source order, on SYNs alone for TCP ports, then a drop
// of each statement's knock ports);
// then one chain per service, reached by its ports, holding its allows,
// bans, the guard of a knocked service, its limits and the accepts of open
// doors or of connections under the limits. Forwarded services are
// DNAT'ed in prerouting and their chains hang off the forward hook,
// matched by the original destination port and the internal host.
func Lower(p *lang.Policy) (*Ruleset, lang.Diagnostics) {
	l := &lowerer{p: p, ids: plan.Assign(p)}
	l.t = &Table{Family: "inet", Name: "kwl"}
	l.millis()
	l.lower()
	counters(l.t)
	l.diags.Sort()
	return &Ruleset{Table: l.t}, l.diags
}

// counters puts a counter before the verdict of every rule that accepts,
// drops or rejects a packet for a statement: kwl status adds them up per
// statement (packets and bytes admitted and refused).
func counters(t *Table) {
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			n := len(r.Exprs)
			if n == 0 || !r.Origin.Pos.IsValid() {
				continue
			}
			v, ok := r.Exprs[n-1].(*Verdict)
			if !ok {
				continue
			}
			switch v.Kind {
			case Accept, Drop, Reject, RejectTCPReset:
				r.Exprs = append(r.Exprs[:n-1:n-1], &Counter{}, v)
			}
		}
	}
}

type lowerer struct {
	p     *lang.Policy
	ids   *plan.IDs
	t     *Table
	diags lang.Diagnostics
	sets  map[string]*Set
	// overChains are the chains that ban a source over a limit.
	overChains []*Chain
	// helpers are the chains that the knock and service chains jump to
	// so that no rule grows with a statement: the resets of sequences,
	// the closes of many doors, the guards of a service with many doors.
	helpers []*Chain
}

// millis refuses the durations nftables cannot keep exactly. Set and
// element timeouts travel over netlink in milliseconds (NFTA_SET_TIMEOUT,
// NFTA_SET_ELEM_TIMEOUT; nf_msecs_to_jiffies64 in the kernel), and a
// limit's rate is derived from its window, so a duration with a
// remainder below one millisecond is an error, not a rounding.
func (l *lowerer) millis() {
	check := func(pos lang.Pos, d time.Duration, what string) {
		if d%time.Millisecond == 0 {
			return
		}
		up := (d + time.Millisecond - 1).Truncate(time.Millisecond)
		l.diags.Add(pos, lang.Error, lang.LintTiming,
			fmt.Sprintf("nftables keeps timeouts in whole milliseconds: it cannot express %s of %s", what, plan.Dur(d)),
			fmt.Sprintf("write whole milliseconds (%s)", plan.Dur(up)))
	}
	for _, d := range l.p.Doors {
		if d.Within != d.Span {
			check(d.Pos, d.Within, "the window between knocks")
		}
		check(d.Pos, d.Span, "the window of the sequence")
		check(d.Pos, d.Lifetime, "the door's lifetime")
		check(d.Pos, d.Ignore, "the time a source is ignored")
	}
	for _, r := range l.p.Revokes {
		if r.Within != r.Span {
			check(r.Pos, r.Within, "the window between knocks")
		}
		check(r.Pos, r.Span, "the window of the sequence")
	}
	for _, lim := range l.p.Limits {
		if !lim.Concurrent {
			check(lim.Pos, lim.Window, "the limit's window")
		}
		check(lim.Pos, lim.Ban, "the ban")
	}
}

func famInfo(f plan.Fam) (nfproto string, saddr, daddr Field, kt KeyType) {
	if f == plan.V4 {
		return "ipv4", IPSaddr, IPDaddr, IPv4Addr
	}
	return "ipv6", IP6Saddr, IP6Daddr, IPv6Addr
}

func nfproto(f plan.Fam) *Match {
	n, _, _, _ := famInfo(f)
	return &Match{Field: NFProto, Values: []any{n}}
}

func saddr(f plan.Fam) Field { _, s, _, _ := famInfo(f); return s }

func key(f plan.Fam, prefix int) Key {
	if prefix >= f.Bits() {
		prefix = 0
	}
	return Key{Field: saddr(f), Prefix: prefix}
}

func ctNew() *Match { return &Match{Field: CtState, Values: []any{"new"}} }

func fsuffix(f plan.Fam) string { return fmt.Sprintf("_%d", f) }

// Tick is one period of the kernel clock in which set timeouts are kept
// (a jiffy at CONFIG_HZ=250, the target machines' tick).
//
// A duration D of a statement (a door's lifetime, a sequence's window, a
// ban, a limit's window) means the closed interval [t, t+D]: a source that
// knocked at t still finds its door at t+D. xt_recent's --seconds window
// is closed in the same way (stamps >= now - D count), while an nft
// element is expired once now >= its expiration. So every set timeout is
// D plus one tick: an element added at jiffy j is found through jiffy
// j+D and gone at j+D+1, exactly when an xt_recent stamp of j stops
// counting.
const Tick = 4 * time.Millisecond

// set declares (once) a set of family f whose elements live for d.
func (l *lowerer) set(name string, f plan.Fam, d time.Duration, origin lang.Ref, comment string) string {
	_, _, _, kt := famInfo(f)
	return l.typedSet(name, kt, d, origin, comment)
}

// typedSet declares (once) a set of key type kt whose elements live for
// d (see Tick).
func (l *lowerer) typedSet(name string, kt KeyType, d time.Duration, origin lang.Ref, comment string) string {
	if l.sets == nil {
		l.sets = map[string]*Set{}
	}
	if _, ok := l.sets[name]; ok {
		return name
	}
	s := &Set{Name: name, Type: kt, Timeout: d + Tick, Origin: origin, Comment: comment}
	l.sets[name] = s
	l.t.Sets = append(l.t.Sets, s)
	return name
}

// untimedSet declares (once) a set of family f without timeouts.
func (l *lowerer) untimedSet(name string, f plan.Fam, origin lang.Ref, comment string) string {
	name = l.set(name, f, 0, origin, comment)
	l.sets[name].Timeout = 0
	return name
}

func (l *lowerer) doorSet(d *lang.Door, f plan.Fam) string {
	return l.set("door_"+l.ids.Door[d]+fsuffix(f), f, d.Lifetime, d.Ref,
		fmt.Sprintf("sources with %s open, line %d", d.Service.Name, d.Pos.Line))
}

// stageSet is the set of sources that have knocked the first k ports of a
// sequence; its elements live for the sequence's window.
func (l *lowerer) stageSet(prefix, id string, k int, f plan.Fam, within time.Duration, ref lang.Ref) string {
	return l.set(fmt.Sprintf("%s_%s_%d%s", prefix, id, k, fsuffix(f)), f, within, ref,
		fmt.Sprintf("sources at knock %d of the sequence of line %d", k, ref.Pos.Line))
}

func (l *lowerer) chain(c *Chain) *Chain {
	l.t.Chains = append(l.t.Chains, c)
	return c
}

func comment(kind string, s *lang.Service, r lang.Ref) string {
	return fmt.Sprintf("%s %s, line %d", kind, s.Name, r.Pos.Line)
}

func logExpr(lg *lang.Log, kind string, s *lang.Service) []Expr {
	if lg == nil {
		return nil
	}
	rate, unit, burst := plan.LogRate(lg)
	return []Expr{&Limit{Rate: rate, Unit: unit, Burst: uint32(burst)}, &Log{Level: lg.Level, Prefix: plan.LogPrefix(lg, kind, s)}}
}

// limitLogs gives every rule that logs a rule of its own for the log, so
// that the log's limit decides only whether a line is written, never the
// rule's verdict: a rule whose log limit is spent would otherwise not
// match at all. logExpr writes a log as a limit followed by the log. A
// rule whose matches are stateless is repeated: first its matches with
// the limit and the log, then its matches with the rest. A rule whose
// matches change state (a set add, update or delete) cannot run twice:
// it goes to a chain that logs and then ends as the rule did.
func (l *lowerer) limitLogs() {
	n := 0
	var extra []*Chain
	for _, c := range l.t.Chains {
		var out []*Rule
		for _, r := range c.Rules {
			i := logAt(r.Exprs)
			if i < 0 {
				out = append(out, r)
				continue
			}
			pre, lg, post := r.Exprs[:i-1], r.Exprs[i-1:i+1], r.Exprs[i+1:]
			if stateless(pre) {
				out = append(out,
					&Rule{Exprs: cat(pre, lg), Origin: r.Origin, Comment: r.Comment},
					&Rule{Exprs: cat(pre, post), Origin: r.Origin, Comment: r.Comment})
				continue
			}
			n++
			lc := &Chain{Name: fmt.Sprintf("log_%d", n), Rules: []*Rule{
				{Exprs: cat(lg), Origin: r.Origin, Comment: r.Comment},
				{Exprs: cat(post), Origin: r.Origin, Comment: r.Comment},
			}}
			extra = append(extra, lc)
			out = append(out, &Rule{Exprs: cat(pre, one(&Verdict{Kind: Goto, Chain: lc.Name})), Origin: r.Origin, Comment: r.Comment})
		}
		c.Rules = out
	}
	// The log chains go first, so that every goto names a chain declared
	// above it.
	l.t.Chains = append(extra, l.t.Chains...)
}

// logAt returns the index of the log of a rule that logexpr wrote (a
// Log after its Limit), or -1.
func logAt(es []Expr) int {
	for i, e := range es {
		if _, ok := e.(*Log); ok && i > 0 {
			if _, ok := es[i-1].(*Limit); ok {
				return i
			}
		}
	}
	return -1
}

// stateless reports whether evaluating es changes no state.
func stateless(es []Expr) bool {
	for _, e := range es {
		switch e.(type) {
		case *Match, *TCPFlags, *Lookup:
		default:
			return false
		}
	}
	return true
}

func portMatches(pp plan.ProtoPorts, field Field) []Expr {
	vals := make([]any, len(pp.Ports))
	for i, n := range pp.Ports {
		vals[i] = n
	}
	return []Expr{&Match{Field: L4Proto, Values: []any{pp.Proto}}, &Match{Field: field, Values: vals}}
}

func prefixValues(ps []netip.Prefix) []any {
	vals := make([]any, len(ps))
	for i, p := range ps {
		vals[i] = p
	}
	return vals
}

// srcMatch restricts a rule of family f to the statement's sources.
func srcMatch(from []netip.Prefix, f plan.Fam) []Expr {
	ps := plan.From(from, f)
	if len(ps) == 0 {
		return nil
	}
	return []Expr{&Match{Field: saddr(f), Values: prefixValues(ps)}}
}

func cat(parts ...[]Expr) []Expr {
	var out []Expr
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func one(e ...Expr) []Expr { return e }

func (l *lowerer) lower() {
	p := l.p
	knocks := plan.Knocks(p)
	var knock *Chain
	if len(knocks) > 0 {
		knock = &Chain{Name: "knock"}
		l.knockRules(knock, knocks)
	}

	var svcChains []*Chain
	svcChain := map[*lang.Service]*Chain{}
	for _, s := range p.Services {
		if c := l.serviceChain(s); c != nil {
			svcChains = append(svcChains, c)
			svcChain[s] = c
		}
	}

	established := &Rule{
		Exprs:   one(&Match{Field: CtState, Values: []any{"established", "related"}}, &Verdict{Kind: Accept}),
		Comment: "established connections are never cut",
	}
	input := &Chain{Name: "input", Type: "filter", Hook: Input, Priority: Priority, Policy: Accept}
	input.Rules = append(input.Rules, established)
	input.Rules = append(input.Rules, l.banAllRules()...)
	if knock != nil {
		input.Rules = append(input.Rules, &Rule{Exprs: one(&Verdict{Kind: Jump, Chain: knock.Name}), Comment: "knock ports"})
	}
	var forward, prerouting *Chain
	for _, s := range p.Services {
		c := svcChain[s]
		if c == nil {
			continue
		}
		if !s.Forward.IsValid() {
			for _, pp := range plan.ByProto(s.Ports) {
				input.Rules = append(input.Rules, &Rule{
					Exprs:   cat(portMatches(pp, THDport), one(&Verdict{Kind: Jump, Chain: c.Name})),
					Comment: "service " + s.Name,
				})
			}
			continue
		}
		if forward == nil {
			forward = &Chain{Name: "forward", Type: "filter", Hook: Forward, Priority: Priority, Policy: Accept}
			forward.Rules = append(forward.Rules, &Rule{Exprs: established.Exprs, Comment: established.Comment})
			prerouting = &Chain{Name: "prerouting", Type: "nat", Hook: Prerouting, Priority: DNATPriority, Policy: Accept}
		}
		f := plan.ServiceFamilies(s)[0]
		_, _, daddr, _ := famInfo(f)
		bits := f.Bits()
		for _, pp := range plan.ByProto(s.Ports) {
			// The forward hook sees the address after DNAT; the port is
			// matched as the client sent it (ct original proto-dst), as
			// Shorewall's ORIGINAL DEST column does.
			forward.Rules = append(forward.Rules, &Rule{
				Exprs: cat(one(nfproto(f), &Match{Field: daddr, Values: []any{netip.PrefixFrom(s.Forward.Unmap(), bits)}}),
					portMatches(pp, CtOrigDport), one(&Verdict{Kind: Jump, Chain: c.Name})),
				Comment: "service " + s.Name,
			})
			prerouting.Rules = append(prerouting.Rules, &Rule{
				Exprs: cat(one(nfproto(f), &Match{Field: FibDaddrType, Values: []any{"local"}}),
					portMatches(pp, THDport), one(&NAT{Addr: s.Forward.Unmap()})),
				Origin:  s.Ref,
				Comment: fmt.Sprintf("service %s forwarded to %s", s.Name, s.Forward.Unmap()),
			})
		}
	}

	// Regular chains first, so that every jump names a chain declared above it.
	for _, c := range l.helpers {
		l.chain(c)
	}
	if knock != nil {
		l.chain(knock)
	}
	for _, c := range svcChains {
		l.chain(c)
	}
	for _, c := range l.overChains {
		l.chain(c)
	}
	if prerouting != nil {
		l.chain(prerouting)
	}
	l.chain(input)
	if forward != nil {
		l.chain(forward)
	}
	l.limitLogs()
}

// knockRules fills the knock chain: every statement's state updates in
// source order, then every statement's drop of its knock ports, so that a
// port shared by two statements updates both before it is dropped.
func (l *lowerer) knockRules(c *Chain, knocks []plan.Knock) {
	for _, k := range knocks {
		if k.Door != nil {
			l.doorRules(c, k.Doors)
		} else {
			l.revokeRules(c, k.Revokes)
		}
	}
	for _, k := range knocks {
		var (
			ports []lang.Port
			from  []netip.Prefix
			fam   lang.Family
			lg    *lang.Log
			kind  = "knock"
			s     *lang.Service
			ref   = k.Ref()
		)
		if d := k.Door; d != nil {
			ports, from, fam, lg, s = d.Sequence, d.From, d.Family, d.Log, d.Service
		} else {
			r := k.Revoke
			ports, from, fam, lg, s, kind = append(append([]lang.Port{}, r.Ports...), r.Sequence...), r.From, r.Family, l.ids.RevokeLog(r), r.Service, "close"
		}
		// Knock ports are addressed to the firewall: a forwarded service's
		// family does not restrict them.
		fams := plan.Families(fam, from, nil)
		var prefixes [][]Expr
		if fam == lang.Both && len(from) == 0 {
			prefixes = [][]Expr{nil}
		} else {
			for _, f := range fams {
				prefixes = append(prefixes, cat(one(nfproto(f)), srcMatch(from, f)))
			}
		}
		// A knock that passes goes on, logged if the statement logs.
		verdict := one(&Verdict{Kind: Drop})
		if k.Pass() {
			if lg == nil {
				continue
			}
			verdict = nil
		}
		for _, pre := range prefixes {
			for _, pp := range plan.ByProto(ports) {
				c.Rules = append(c.Rules, &Rule{
					Exprs:   cat(pre, portMatches(pp, THDport), logExpr(lg, kind, s), verdict),
					Origin:  ref,
					Comment: comment(kind, s, ref),
				})
			}
		}
	}
}

// knockBase is the start of a state rule of a knock statement: family,
// sources, new packets, one port, and a SYN for a TCP port.
func knockBase(f plan.Fam, from []netip.Prefix, port lang.Port) []Expr {
	return cat(one(nfproto(f)), srcMatch(from, f), one(ctNew()),
		portMatches(plan.ProtoPorts{Proto: port.Proto, Ports: []uint16{port.Num}}, THDport), synOnly(port.Proto))
}

// synOnly returns, for TCP, the match of a connection attempt: SYN set,
// ACK clear. conntrack calls a bare ACK new too when it picks a flow up
// mid-stream (nf_conntrack_tcp_loose=1), which is what an ACK scan
// (nmap -sA) sends: such a packet must not knock, close or count. Other
// scans (FIN, Xmas, null) are INVALID and never new. Nil for UDP.
func synOnly(p lang.Proto) []Expr {
	if p != lang.TCP {
		return nil
	}
	return one(&TCPFlags{Mask: TCPSyn | TCPAck, Value: TCPSyn})
}

// notSYN matches a TCP packet that is not a connection attempt: the
// complement of synOnly among TCP packets.
func notSYN() []Expr {
	return one(&Match{Field: L4Proto, Values: []any{lang.TCP}}, &TCPFlags{Mask: TCPSyn | TCPAck, Value: TCPSyn, Neg: true})
}

// doorRules emits the knocks of a statement that opens the doors ds
// (one per service it names, alike but for the service): one sequence,
// whose last knock opens every door of the family; several doors open in
// a chain of their own, one update a rule, so that a full set keeps no
// other door shut.
func (l *lowerer) doorRules(c *Chain, ds []*lang.Door) {
	d := ds[0]
	for _, f := range plan.Families(d.Family, d.From, nil) {
		k := key(f, plan.DoorMask(d, f))
		var final []Expr
		for _, e := range ds {
			if plan.Covers(plan.Families(e.Family, e.From, e.Service), f) {
				final = append(final, &Dynset{Op: Update, Set: l.doorSet(e, f), Key: k})
			}
		}
		if len(final) == 0 {
			continue
		}
		cm := comment("knock", d.Service, d.Ref)
		if len(final) > 1 {
			final = l.oneEach(fmt.Sprintf("open_%s%s", l.ids.Door[d], fsuffix(f)), final, d.Ref, cm)
		}
		if d.Secret != nil {
			l.tokenRule(c, d, f, final, cm)
			continue
		}
		var ign *ignoreSet
		if d.Ignore > 0 {
			ign = &ignoreSet{name: l.set("ign_"+l.ids.Door[d]+fsuffix(f), f, d.Ignore, d.Ref,
				fmt.Sprintf("sources ignored after a knock out of order, line %d", d.Pos.Line))}
		}
		l.sequence(c, "seq", l.ids.Door[d], d.Sequence, d.Within, d.Span, d.From, f, k, ign, d.Reset, d.Ref, final, cm)
	}
}

// tokenRule emits the knock of a secret door in family f: a new
// datagram to its port of exactly a token's length whose payload is in
// the statement's token set uses the token up and opens the doors
// (final). The set, one for both families since a token opens once,
// has no elements here (Set.Tokens).
func (l *lowerer) tokenRule(c *Chain, d *lang.Door, f plan.Fam, final []Expr, cm string) {
	name := "tokens_" + l.ids.Door[d]
	if _, ok := l.sets[name]; !ok {
		l.typedSet(name, TokenKey, 0, d.Ref, fmt.Sprintf("tokens of the secret knock of line %d", d.Pos.Line))
		s := l.sets[name]
		s.Timeout = 0
		s.Tokens = &TokenSource{Secret: d.Secret.Path, Every: lang.TokenWindow, Skew: lang.TokenSkew}
	}
	tok := Key{Field: Token}
	c.Rules = append(c.Rules, &Rule{
		Exprs: cat(knockBase(f, d.From, d.Sequence[0]),
			one(&Match{Field: UDPLength, Values: []any{uint16(UDPHeader + secret.TokenSize)}},
				&Lookup{Set: name, Key: tok}, &Dynset{Op: Delete, Set: name, Key: tok}),
			final),
		Origin:  d.Ref,
		Comment: cm,
	})
}

// UDPHeader is the length of a UDP header: a datagram of a token has a
// UDP length of UDPHeader+secret.TokenSize.
const UDPHeader = 8

// otherResets emits the rules by which a strict or exclusive sequence
// (lang.ResetAny, lang.ResetKnocks) starts over on a packet that is
// none of its knocks. For each stage k a rule sends the packets it
// resets on, from a source at stage k, to a chain that returns for the
// knocks the attempt expects (the next port, k+1) or shrugs off (port
// k again, a retransmission) and resets it otherwise. They come before
// the sequence's own rules, which then see the attempt as the packet
// left it.
func (l *lowerer) otherResets(c *Chain, kind, id string, ports []lang.Port, from []netip.Prefix, f plan.Fam, sk Key,
	rs lang.Reset, stages []string, jumpReset []Expr, knock func(plan.Fam, []netip.Prefix, lang.Port) []Expr, ref lang.Ref, cm string) {
	if rs == lang.ResetOwn {
		return
	}
	// What resets: any new packet, or a knock of the policy.
	var on [][]Expr
	if rs == lang.ResetAny {
		on = [][]Expr{nil}
	} else {
		for _, pp := range plan.KnockPorts(l.p) {
			on = append(on, cat(portMatches(pp, THDport), synOnly(pp.Proto)))
		}
	}
	for k := 1; k < len(ports); k++ {
		h := &Chain{Name: fmt.Sprintf("%s_%s_other_%d%s", kind, id, k, fsuffix(f))}
		h.Rules = []*Rule{
			{Exprs: cat(knock(f, from, ports[k-1]), one(&Verdict{Kind: Return})), Origin: ref, Comment: cm},
			{Exprs: cat(knock(f, from, ports[k]), one(&Verdict{Kind: Return})), Origin: ref, Comment: cm},
			{Exprs: jumpReset, Origin: ref, Comment: cm},
		}
		l.helpers = append(l.helpers, h)
		for _, m := range on {
			c.Rules = append(c.Rules, &Rule{
				Exprs:  cat(one(nfproto(f)), one(ctNew()), m, one(&Lookup{Set: stages[k], Key: sk}), one(&Verdict{Kind: Jump, Chain: h.Name})),
				Origin: ref, Comment: cm,
			})
		}
	}
}

// ignoreSet is the set of sources a sequence ignores after a knock out
// of order (Door.Ignore).
type ignoreSet struct{ name string }

// oneEach puts the set operations es in a helper chain of that name, one
// a rule, and returns the jump to it: the rule that runs them stays the
// same size however many doors there are, and a full set keeps no other
// door as it was.
func (l *lowerer) oneEach(name string, es []Expr, origin lang.Ref, cm string) []Expr {
	c := &Chain{Name: name}
	for _, e := range es {
		c.Rules = append(c.Rules, &Rule{Exprs: one(e), Origin: origin, Comment: cm})
	}
	l.helpers = append(l.helpers, c)
	return one(&Verdict{Kind: Jump, Chain: c.Name})
}

// revokeRules emits the knocks of a statement that closes the doors of
// the services of rs (one revoke per service it names).
func (l *lowerer) revokeRules(c *Chain, rs []*lang.Revoke) {
	r := rs[0]
	for _, f := range plan.Families(r.Family, r.From, nil) {
		var final []Expr
		for _, rv := range rs {
			for _, d := range l.ids.DoorsOf(rv.Service) {
				if plan.Covers(plan.Families(d.Family, d.From, d.Service), f) {
					final = append(final, &Dynset{Op: Delete, Set: l.doorSet(d, f), Key: key(f, plan.DoorMask(d, f))})
				}
			}
		}
		if len(final) == 0 {
			continue // no door of this family to close; the ports are still dropped
		}
		cm := comment("close", r.Service, r.Ref)
		if len(final) > 1 {
			final = l.oneEach(fmt.Sprintf("close_%s%s", l.ids.Revoke[r], fsuffix(f)), final, r.Ref, cm)
		}
		if len(r.Ports) > 0 {
			for _, pp := range plan.ByProto(r.Ports) {
				c.Rules = append(c.Rules, &Rule{
					Exprs:   cat(one(nfproto(f)), srcMatch(r.From, f), one(ctNew()), portMatches(pp, THDport), synOnly(pp.Proto), final),
					Origin:  r.Ref,
					Comment: cm,
				})
			}
			continue
		}
		l.sequence(c, "rseq", l.ids.Revoke[r], r.Sequence, r.Within, r.Span, r.From, f, key(f, 0), nil, r.Reset, r.Ref, final, cm)
	}
}

// sequence emits the state rules of a knock sequence in family f. With
// stage sets s1..s(n-1) (s_k: sources that knocked the first k ports,
// each element living for the window): a knock on p1 (re)starts the
// attempt; a knock on pk, k > 1, advances a source found in s(k-1) and
// resets any other source (knockd: a knock out of order invalidates the
// attempt); the last knock runs final (opens or closes the door). A source
// is in at most one stage set at a time, so an advance deletes it from
// s(k-1) alone.
//
// The stage sets are keyed by sk, the key of the door the sequence opens
// (a source, or its prefix with per source/N).
//
// A reset deletes the source from every stage set. It is a chain of its
// own, one delete a rule, which the rules jump to: a rule stays the same
// size however long the sequence is. The kernel refuses a rule of more
// than 128 expressions or of 4 kB of expression data (EFBIG,
// nf_tables_newrule), which a rule deleting from 34 sets passes.
func (l *lowerer) sequence(c *Chain, kind, id string, ports []lang.Port, within, span time.Duration,
	from []netip.Prefix, f plan.Fam, sk Key, ign *ignoreSet, rs lang.Reset, ref lang.Ref, final []Expr, cm string) {
	n := len(ports)
	// An ignored source's knocks match no rule of the sequence; a knock
	// out of order puts the source there (wrong, below).
	var notIgnored, wrong []Expr
	if ign != nil {
		notIgnored = one(&Lookup{Set: ign.name, Key: sk, Neg: true})
		wrong = one(&Dynset{Op: Update, Set: ign.name, Key: sk})
	}
	knockBase := func(f plan.Fam, from []netip.Prefix, p lang.Port) []Expr {
		return cat(knockBase(f, from, p), notIgnored)
	}
	if n == 1 {
		c.Rules = append(c.Rules, &Rule{Exprs: cat(knockBase(f, from, ports[0]), final), Origin: ref, Comment: cm})
		return
	}
	stages := make([]string, n) // stages[k]: set of sources at stage k, 1 <= k < n
	reset := &Chain{Name: fmt.Sprintf("%s_%s_reset%s", kind, id, fsuffix(f))}
	for k := 1; k < n; k++ {
		stages[k] = l.stageSet(kind, id, k, f, within, ref)
		reset.Rules = append(reset.Rules, &Rule{Exprs: one(&Dynset{Op: Delete, Set: stages[k], Key: sk}), Origin: ref, Comment: cm})
	}
	l.helpers = append(l.helpers, reset)
	jumpReset := one(&Verdict{Kind: Jump, Chain: reset.Name})
	// A knock on the port of the source's last counted knock (at stage
	// k, port k: a retransmitted or duplicated SYN) neither restarts,
	// resets nor advances the attempt; nor does a knock on the next port,
	// which advances it. The rules that restart or reset skip those
	// stages (plan.Kept); a port that comes back later in the sequence
	// has them for each of its places, and is reset once.
	notKept := func(p lang.Port) []Expr {
		var es []Expr
		for _, k := range plan.Kept(ports, p) {
			es = append(es, &Lookup{Set: stages[k], Key: sk, Neg: true})
		}
		return es
	}
	l.otherResets(c, kind, id, ports, from, f, sk, rs, stages, jumpReset, knockBase, ref, cm)
	// p1: restart.
	c.Rules = append(c.Rules, &Rule{Exprs: cat(knockBase(f, from, ports[0]), notKept(ports[0]), jumpReset), Origin: ref, Comment: cm})
	// The window of the whole sequence: the first knock (again) starts
	// it in a set of its own, whose element no later knock refreshes;
	// every later knock must find the source there. It comes before the
	// update of stage 1, after which the source is at stage 1.
	var inSpan []Expr
	if span > 0 {
		all := l.set(fmt.Sprintf("%s_%s_in%s", kind, id, fsuffix(f)), f, span, ref,
			fmt.Sprintf("sources within the window of the sequence of line %d", ref.Pos.Line))
		c.Rules = append(c.Rules, &Rule{Exprs: cat(knockBase(f, from, ports[0]), notKept(ports[0]), one(&Dynset{Op: Update, Set: all, Key: sk})), Origin: ref, Comment: cm})
		inSpan = one(&Lookup{Set: all, Key: sk})
	}
	c.Rules = append(c.Rules, &Rule{Exprs: cat(knockBase(f, from, ports[0]), notKept(ports[0]), one(&Dynset{Op: Update, Set: stages[1], Key: sk})), Origin: ref, Comment: cm})
	for k := 2; k <= n; k++ {
		prev := stages[k-1]
		p := ports[k-1]
		if !slices.Contains(ports[:k-1], p) {
			// Neither at stage k-1 (or too late) nor where a knock on p
			// is kept: the attempt is over.
			c.Rules = append(c.Rules, &Rule{Exprs: cat(knockBase(f, from, p), notKept(p), jumpReset), Origin: ref, Comment: cm})
			if wrong != nil {
				// After the reset, so that a full set of the ignored
				// (where update does not match) still resets the attempt.
				c.Rules = append(c.Rules, &Rule{Exprs: cat(knockBase(f, from, p), notKept(p), wrong), Origin: ref, Comment: cm})
			}
		}
		next := final
		if k < n {
			next = one(&Dynset{Op: Update, Set: stages[k], Key: sk})
		}
		c.Rules = append(c.Rules, &Rule{
			Exprs:  cat(knockBase(f, from, ports[k-1]), one(&Lookup{Set: prev, Key: sk}), inSpan, one(&Dynset{Op: Delete, Set: prev, Key: sk}), next),
			Origin: ref, Comment: cm,
		})
	}
}
