package iptables

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"kwl.dev/kwl/compile/internal/plan"
	"kwl.dev/kwl/lang"
)

// Kernel and tool limits the lowering keeps to.
const (
	// ListTot is xt_recent's default number of sources per list
	// (ip_list_tot, net/netfilter/xt_recent.c); the least recently seen
	// is evicted for a new one, whatever its age.
	ListTot = 100
	// MaxHitcountOld is the largest --hitcount kernels before 6.11 accept
	// (commit f4ebd03496f6 raised it to 65535); larger gets EINVAL.
	MaxHitcountOld = 255
	// MaxHitcount is the largest --hitcount any kernel accepts.
	MaxHitcount = 65535
	// MaxListName is the longest recent list name: XT_RECENT_NAME_LEN is
	// 200 with the terminating NUL (include/uapi/linux/netfilter/xt_recent.h).
	MaxListName = 199
	// MaxChainName is the longest chain name iptables accepts
	// (XT_EXTENSION_MAXNAMELEN 29, with the NUL).
	MaxChainName = 28
	// MaxLogPrefix is the longest --log-prefix of the LOG target.
	MaxLogPrefix = 29
	// MaxPorts is how many ports one multiport match holds
	// (XT_MULTI_PORTS).
	MaxPorts = 15
)

// Lower turns a checked policy into kwl's iptables rulesets, one per
// family, built like Shorewall's SSHKnock and Limit actions: recent lists
// for doors, sequence stages, per-source counters and bans. The
// diagnostics are warnings where iptables cannot give a statement its
// exact meaning, and errors where it cannot compile it; the warnings of
// every backend are compile.Warnings'.
//
// Chains (filter table): kwl-input, jumped to from the top of INPUT, runs
// established/related accept, then kwl-knock (state updates of every
// knock and close statement in source order, then a drop of each
// statement's knock ports), then one chain per service (kwl-svc-NAME) with
// its allows, bans, guard, limits and accepts. Forwarded services hang off
// kwl-forward (from FORWARD) and are DNAT'ed in kwl-prerouting (nat
// table, from PREROUTING).
func Lower(p *lang.Policy) (*Ruleset, lang.Diagnostics) {
	l := &lowerer{p: p, ids: plan.Assign(p), warned: map[string]bool{}}
	for _, d := range p.Doors {
		if d.Secret != nil {
			l.warn(d.Secret.Pos, lang.Error, lang.LintSingleUse, "iptables cannot use a secret knock's token once",
				"deploy it with nft: xt_recent keys by address and ipset has no key of payload bytes, so a token seen on the way could be sent again")
		}
	}
	if l.diags.HasErrors() {
		return nil, l.diags
	}
	rs := &Ruleset{V4: l.family(plan.V4), V6: l.family(plan.V6)}
	l.diags.Sort()
	return rs, l.diags
}

type lowerer struct {
	p      *lang.Policy
	ids    *plan.IDs
	diags  lang.Diagnostics
	warned map[string]bool // warnings given once though both families are lowered
}

func (l *lowerer) warn(pos lang.Pos, sev lang.Severity, code lang.Code, msg, hint string) {
	k := fmt.Sprintf("%v|%s|%s", pos, code, msg)
	if l.warned[k] {
		return
	}
	l.warned[k] = true
	l.diags.Add(pos, sev, code, msg, hint)
}

// fam builds the ruleset of one family.
type fam struct {
	l      *lowerer
	f      plan.Fam
	filter *Table
	nat    *Table
	chains map[string]*Chain
	logN   int
	// masks holds the prefix length of every list keyed by a prefix (a
	// door per source/24, its sequence's stages). xt_recent copies a
	// list's --mask when a rule creates the list and ignores it in every
	// later rule, so each rule on such a list carries the same one:
	// keyMasks writes it on them all.
	masks map[string]int
}

// shorten keeps a name within max characters, replacing its tail by a
// hash of the whole so that distinct long names stay distinct.
func shorten(name string, max int) string {
	if len(name) <= max {
		return name
	}
	h := sha256.Sum256([]byte(name))
	tail := hex.EncodeToString(h[:3])
	return name[:max-len(tail)-1] + "-" + tail
}

func chainName(parts ...string) string {
	n := "kwl"
	for _, p := range parts {
		n += "-" + p
	}
	return shorten(n, MaxChainName)
}

func (b *fam) chain(t *Table, name string) *Chain {
	if c, ok := b.chains[t.Name+"/"+name]; ok {
		return c
	}
	c := &Chain{Name: name}
	b.chains[t.Name+"/"+name] = c
	t.Chains = append(t.Chains, c)
	return c
}

func (l *lowerer) family(f plan.Fam) *Family {
	b := &fam{l: l, f: f, filter: &Table{Name: "filter"}, chains: map[string]*Chain{}}
	input := b.chain(b.filter, "kwl-input")
	established := func() *Rule {
		return &Rule{CtState: []string{"RELATED", "ESTABLISHED"}, Target: Target{Kind: ACCEPT},
			Comment: "established connections are never cut"}
	}
	input.Rules = append(input.Rules, established())
	b.banAllRules(input)
	if knocks := plan.Knocks(l.p); len(knocks) > 0 {
		knock := b.chain(b.filter, "kwl-knock")
		input.Rules = append(input.Rules, &Rule{Target: Target{Kind: JUMP, Chain: knock.Name}, Comment: "knock ports"})
		b.knockRules(knock, knocks)
	}
	var forward, prerouting *Chain
	for _, s := range l.p.Services {
		if !plan.Covers(plan.ServiceFamilies(s), f) {
			continue
		}
		c := b.serviceChain(s)
		if c == nil {
			continue
		}
		if !s.Forward.IsValid() {
			for _, pp := range plan.ByProto(s.Ports) {
				for _, ports := range chunks(pp.Ports) {
					input.Rules = append(input.Rules, &Rule{Proto: pp.Proto, DPorts: ports,
						Target: Target{Kind: JUMP, Chain: c.Name}, Comment: "service " + s.Name})
				}
			}
			continue
		}
		if forward == nil {
			forward = b.chain(b.filter, "kwl-forward")
			forward.Rules = append(forward.Rules, established())
			b.nat = &Table{Name: "nat"}
			prerouting = b.chain(b.nat, "kwl-prerouting")
		}
		host := netip.PrefixFrom(s.Forward.Unmap(), f.Bits())
		for _, pp := range plan.ByProto(s.Ports) {
			for _, port := range pp.Ports {
				// FORWARD sees the address after DNAT; the port is matched
				// as the client sent it, as Shorewall's ORIGINAL DEST does.
				forward.Rules = append(forward.Rules, &Rule{Proto: pp.Proto, Dst: []netip.Prefix{host}, CtOrigDport: port,
					Target: Target{Kind: JUMP, Chain: c.Name}, Comment: "service " + s.Name})
			}
			for _, ports := range chunks(pp.Ports) {
				prerouting.Rules = append(prerouting.Rules, &Rule{Proto: pp.Proto, DPorts: ports, DstLocal: true,
					Target: Target{Kind: DNAT, ToDest: s.Forward.Unmap()}, Origin: s.Ref,
					Comment: fmt.Sprintf("service %s forwarded to %s", s.Name, s.Forward.Unmap())})
			}
		}
	}
	b.keyMasks()
	fam := &Family{IPv6: f == plan.V6}
	if b.nat != nil {
		b.nat.Chains = append([]*Chain{{Name: "PREROUTING", Builtin: true, Policy: "ACCEPT",
			Rules: []*Rule{{Target: Target{Kind: JUMP, Chain: "kwl-prerouting"}}}}}, b.nat.Chains...)
		fam.Tables = append(fam.Tables, b.nat)
	}
	builtins := []*Chain{{Name: "INPUT", Builtin: true, Policy: "ACCEPT",
		Rules: []*Rule{{Target: Target{Kind: JUMP, Chain: "kwl-input"}}}}}
	if forward != nil {
		builtins = append(builtins, &Chain{Name: "FORWARD", Builtin: true, Policy: "ACCEPT",
			Rules: []*Rule{{Target: Target{Kind: JUMP, Chain: "kwl-forward"}}}})
	}
	b.filter.Chains = append(builtins, b.filter.Chains...)
	fam.Tables = append(fam.Tables, b.filter)
	return fam
}

// keyMasks gives every recent match on a list keyed by a prefix that
// prefix (see fam.masks).
func (b *fam) keyMasks() {
	for _, c := range b.filter.Chains {
		for _, r := range c.Rules {
			if r.Recent != nil {
				if m, ok := b.masks[r.Recent.Name]; ok {
					r.Recent.Mask = m
				}
			}
		}
	}
}

// keyedList names a list keyed by prefixes of length bits, or, when
// shared, by one entry for every source, and records its mask (see
// fam.masks). The key is part of the name ("_m24", "_shared"): since the
// kernel keeps a list's first mask for as long as a rule uses it, a
// redeploy that changed the key under the same name would go on counting
// by the old one.
func (b *fam) keyedList(kind, id string, k, bits int, shared bool) string {
	n := "kwl_" + kind + "_" + id
	if k > 0 {
		n += fmt.Sprintf("_%d", k)
	}
	switch {
	case shared:
		n += "_shared"
	case bits < b.f.Bits():
		n += fmt.Sprintf("_m%d", bits)
	}
	n = shorten(n+fmt.Sprintf("_%d", b.f), MaxListName)
	if bits < b.f.Bits() && !shared {
		if b.masks == nil {
			b.masks = map[string]int{}
		}
		b.masks[n] = bits
	}
	return n
}

// chunks splits ports into groups one multiport match holds.
func chunks(ports []uint16) [][]uint16 {
	var out [][]uint16
	for len(ports) > MaxPorts {
		out = append(out, ports[:MaxPorts])
		ports = ports[MaxPorts:]
	}
	return append(out, ports)
}

func comment(kind string, s *lang.Service, r lang.Ref) string {
	return fmt.Sprintf("%s %s, line %d", kind, s.Name, r.Pos.Line)
}

func newState() []string { return []string{"NEW"} }

// synOnly returns, for TCP, the match of a connection attempt: SYN set,
// ACK clear (--tcp-flags SYN,ACK SYN, which nft writes tcp flags &
// (syn | ack) == syn). conntrack calls a bare ACK NEW too when it picks a
// flow up mid-stream (nf_conntrack_tcp_loose=1), which is what an ACK
// scan (nmap -sA) sends: such a packet must not knock, close or count.
// Nil for UDP.
func synOnly(p lang.Proto) *TCPFlags {
	if p != lang.TCP {
		return nil
	}
	return &TCPFlags{Mask: lang.SYN | lang.ACK, Comp: lang.SYN}
}

// notSYN matches, with -p tcp, a TCP packet that is not a connection
// attempt: the complement of synOnly.
func notSYN() *TCPFlags { return &TCPFlags{Mask: lang.SYN | lang.ACK, Comp: lang.SYN, Invert: true} }

// seconds converts a duration to --seconds. xt_recent counts whole
// seconds (net/netfilter/xt_recent.c, recent_mt_check: seconds is an
// integer), so a duration with a fraction of a second is refused rather
// than rounded.
func (b *fam) seconds(d time.Duration, pos lang.Pos, what string) int {
	if d <= 0 || d%time.Second != 0 {
		up := max(1, (d+time.Second-1)/time.Second)
		b.l.warn(pos, lang.Error, lang.LintTiming,
			fmt.Sprintf("the recent match counts whole seconds: iptables cannot express %s of %s", what, plan.Dur(d)),
			fmt.Sprintf("write a whole number of seconds (%s), or use --backend nft", plan.Dur(up*time.Second)))
		return int(up)
	}
	return int(d / time.Second)
}

// emit appends r to c with target t, logging first when lg asks. A rule
// whose matches change state (recent --set/--update/--remove, limit)
// cannot run twice, so it jumps to a chain that logs and then gives t;
// a stateless rule is repeated with the LOG target.
func (b *fam) emit(c *Chain, r *Rule, t Target, lg *lang.Log, kind string, s *lang.Service) {
	if lg == nil {
		r.Target = t
		c.Rules = append(c.Rules, r)
		return
	}
	logT := b.logTarget(lg, kind, s)
	rate, unit, burst := plan.LogRate(lg)
	limit := &Limit{Rate: int(rate), Unit: xtUnitName[unit], Burst: burst}
	stateful := r.Limit != nil || r.Recent != nil && r.Recent.Op != Rcheck
	if !stateful {
		lr := *r
		lr.Target, lr.Limit = logT, limit
		r.Target = t
		c.Rules = append(c.Rules, &lr, r)
		return
	}
	b.logN++
	lc := b.chain(b.filter, chainName(fmt.Sprintf("log%d", b.logN)))
	lc.Rules = append(lc.Rules, &Rule{Limit: limit, Target: logT, Origin: r.Origin, Comment: r.Comment},
		&Rule{Target: t, Origin: r.Origin, Comment: r.Comment})
	r.Target = Target{Kind: JUMP, Chain: lc.Name}
	c.Rules = append(c.Rules, r)
}

func (b *fam) logTarget(lg *lang.Log, kind string, s *lang.Service) Target {
	return Target{Kind: LOG, LogLevel: lg.Level, LogPrefix: plan.LogPrefix(lg, kind, s)}
}

// xtUnitName names the limit match's units, in which a log's rate is
// written.
var xtUnitName = map[time.Duration]string{time.Second: "second", time.Minute: "minute", time.Hour: "hour", 24 * time.Hour: "day"}

// knockRules fills kwl-knock: the state updates of every statement in
// source order, on SYNs alone for TCP ports, then each statement's drop
// of its ports.
func (b *fam) knockRules(c *Chain, knocks []plan.Knock) {
	for _, k := range knocks {
		if k.Door != nil {
			b.doorRules(c, k.Doors)
		} else {
			b.revokeRules(c, k.Revokes)
		}
	}
	for _, k := range knocks {
		var (
			ports []lang.Port
			from  []netip.Prefix
			fm    lang.Family
			lg    *lang.Log
			kind  = "knock"
			s     *lang.Service
		)
		if d := k.Door; d != nil {
			ports, from, fm, lg, s = d.Sequence, d.From, d.Family, d.Log, d.Service
		} else {
			r := k.Revoke
			ports, from, fm, lg, s, kind = append(append([]lang.Port{}, r.Ports...), r.Sequence...), r.From, r.Family, b.l.ids.RevokeLog(r), r.Service, "close"
		}
		if !plan.Covers(plan.Families(fm, from, nil), b.f) {
			continue
		}
		// A knock that passes goes on, logged if the statement logs.
		verdict := Target{Kind: DROP}
		if k.Pass() {
			if lg == nil {
				continue
			}
			verdict = Target{Kind: NONE}
		}
		for _, pp := range plan.ByProto(ports) {
			for _, ps := range chunks(pp.Ports) {
				b.emit(c, &Rule{Src: plan.From(from, b.f), Proto: pp.Proto, DPorts: ps, Origin: k.Ref(), Comment: comment(kind, s, k.Ref())},
					verdict, lg, kind, s)
			}
		}
	}
}

func (b *fam) doorList(d *lang.Door) string {
	return b.keyedList("door", b.l.ids.Door[d], 0, plan.DoorMask(d, b.f), false)
}

// doorRules emits the knocks of a statement that opens the doors ds
// (one per service it names): one sequence, whose last knock opens
// every door of the family.
func (b *fam) doorRules(c *Chain, ds []*lang.Door) {
	d := ds[0]
	var final []*Recent
	for _, e := range ds {
		if plan.Covers(plan.Families(e.Family, e.From, e.Service), b.f) {
			final = append(final, &Recent{Name: b.doorList(e), Op: Set})
		}
	}
	if len(final) == 0 {
		return
	}
	b.sequence(c, "seq", b.l.ids.Door[d], d.Sequence, d.Within, d.Span, d.From, plan.DoorMask(d, b.f), d.Ignore, d.Reset, d.Ref, final, comment("knock", d.Service, d.Ref))
	b.l.warn(d.Pos, lang.Note, lang.LintCapacity, fmt.Sprintf(
		"xt_recent keeps at most %d sources per list and evicts the least recently seen for a new one, whatever its age: past %d knocking sources, open doors are forgotten (a door that is only checked ages toward eviction while in use)",
		ListTot, ListTot), "")
}

// revokeRules emits the knocks of a statement that closes the doors of
// the services of rs (one revoke per service it names).
func (b *fam) revokeRules(c *Chain, rs []*lang.Revoke) {
	r := rs[0]
	if !plan.Covers(plan.Families(r.Family, r.From, nil), b.f) {
		return
	}
	var final []*Recent
	for _, rv := range rs {
		for _, d := range b.l.ids.DoorsOf(rv.Service) {
			if plan.Covers(plan.Families(d.Family, d.From, d.Service), b.f) {
				final = append(final, &Recent{Name: b.doorList(d), Op: Remove})
			}
		}
	}
	if len(final) == 0 {
		return
	}
	cm := comment("close", r.Service, r.Ref)
	if len(r.Ports) > 0 {
		for _, pp := range plan.ByProto(r.Ports) {
			for _, ps := range chunks(pp.Ports) {
				for _, rc := range final {
					c.Rules = append(c.Rules, &Rule{Src: plan.From(r.From, b.f), Proto: pp.Proto, DPorts: ps, TCPFlags: synOnly(pp.Proto), CtState: newState(),
						Recent: rc, Origin: r.Ref, Comment: cm})
				}
			}
		}
		return
	}
	b.sequence(c, "rseq", b.l.ids.Revoke[r], r.Sequence, r.Within, r.Span, r.From, b.f.Bits(), 0, r.Reset, r.Ref, final, cm)
}

// otherResets emits the rules by which a strict or exclusive sequence
// (lang.ResetAny, lang.ResetKnocks) starts over on a packet that is
// none of its knocks: for each stage k, in the knock chain, before the
// sequence's own rules, a rule sends the packets it resets on from a
// source at stage k to a chain that returns for the knocks the attempt
// expects (the next port) or shrugs off (port k again, a
// retransmission) and resets it otherwise.
func (b *fam) otherResets(c *Chain, kind, id string, ports []lang.Port, rs lang.Reset, at func(int) *Recent,
	knock func(lang.Port, *Recent, Target) *Rule, reset string, ref lang.Ref, cm string) {
	for k := 1; k < len(ports); k++ {
		h := b.chain(b.filter, chainName(kind, id, "other", fmt.Sprint(k)))
		if len(h.Rules) == 0 {
			h.Rules = append(h.Rules,
				knock(ports[k-1], nil, Target{Kind: RETURN}),
				knock(ports[k], nil, Target{Kind: RETURN}),
				&Rule{Target: Target{Kind: JUMP, Chain: reset}, Origin: ref, Comment: cm})
		}
		to := Target{Kind: JUMP, Chain: h.Name}
		if rs == lang.ResetAny {
			c.Rules = append(c.Rules, &Rule{CtState: newState(), Recent: at(k), Target: to, Origin: ref, Comment: cm})
			continue
		}
		for _, pp := range plan.KnockPorts(b.l.p) {
			for _, ps := range chunks(pp.Ports) {
				c.Rules = append(c.Rules, &Rule{Proto: pp.Proto, DPorts: ps, TCPFlags: synOnly(pp.Proto), CtState: newState(),
					Recent: at(k), Target: to, Origin: ref, Comment: cm})
			}
		}
	}
}

// sequence emits the state rules of a knock sequence. Stage lists
// S1..S(n-1) hold the sources that knocked the first k ports. A knock on
// p1 resets the attempt and sets S1; a knock on pk (k > 1) resets the
// attempt of a source not found in S(k-1) within the window (knockd: a
// knock out of order invalidates it), then moves a source found there to
// Sk, or runs final for the last port. The reset runs first: it leaves
// every source that should advance untouched, and --rcheck stamps nothing,
// so the second test sees what the first saw. A source is in at most one
// stage list at a time. The stage lists are keyed by prefixes of bits,
// as the door the sequence opens.
func (b *fam) sequence(c *Chain, kind, id string, ports []lang.Port, within, span time.Duration,
	from []netip.Prefix, bits int, ignore time.Duration, rs lang.Reset, ref lang.Ref, final []*Recent, cm string) {
	src := plan.From(from, b.f)
	knocks := c
	// A sequence that ignores a source after a knock out of order runs
	// in a chain of its own, which returns at once for an ignored source
	// (a rule has one recent match, and each rule of the sequence has
	// one already); the knock chain jumps to it on the sequence's ports.
	var ignList string
	if ignore > 0 && len(ports) > 1 {
		ignList = b.keyedList(kind, id+"_ign", 0, bits, false)
		own := b.chain(b.filter, chainName(kind, id, "knocks"))
		own.Rules = append(own.Rules, &Rule{Recent: &Recent{Name: ignList, Op: Rcheck, Seconds: b.seconds(ignore, ref.Pos, "the time a source is ignored")},
			Target: Target{Kind: RETURN}, Origin: ref, Comment: cm})
		for _, pp := range plan.ByProto(ports) {
			for _, ps := range chunks(pp.Ports) {
				c.Rules = append(c.Rules, &Rule{Src: src, Proto: pp.Proto, DPorts: ps, Target: Target{Kind: JUMP, Chain: own.Name}, Origin: ref, Comment: cm})
			}
		}
		c = own
	}
	base := func(p lang.Port, rc *Recent, t Target) *Rule {
		return &Rule{Src: src, Proto: p.Proto, DPorts: []uint16{p.Num}, TCPFlags: synOnly(p.Proto), CtState: newState(), Recent: rc, Target: t, Origin: ref, Comment: cm}
	}
	n := len(ports)
	if n == 1 {
		for _, rc := range final {
			c.Rules = append(c.Rules, base(ports[0], rc, Target{}))
		}
		return
	}
	// Without "within", a whole window's gaps are bounded by the window
	// itself: one refusal of it says all.
	var spanSecs int
	if span > 0 {
		spanSecs = b.seconds(span, ref.Pos, "the window of the sequence")
	}
	secs := spanSecs
	if within != span {
		secs = b.seconds(within, ref.Pos, "the window between knocks")
	}
	stages := make([]string, n)
	for k := 1; k < n; k++ {
		stages[k] = b.keyedList(kind, id, k, bits, false)
	}
	reset := b.chain(b.filter, chainName(kind, id, "reset"))
	if len(reset.Rules) == 0 {
		for k := 1; k < n; k++ {
			reset.Rules = append(reset.Rules, &Rule{Recent: &Recent{Name: stages[k], Op: Remove}, Origin: ref, Comment: cm})
		}
	}
	// A knock on the port of the source's last counted knock (at stage
	// k, port k: a retransmitted or duplicated SYN) neither restarts,
	// resets nor advances the attempt. A rule has one recent match, so
	// the rules that would restart or reset jump to a chain that returns
	// first for a source at stage k.
	at := func(k int) *Recent { return &Recent{Name: stages[k], Op: Rcheck, Seconds: secs} }
	if rs != lang.ResetOwn {
		b.otherResets(knocks, kind, id, ports, rs, at, base, reset.Name, ref, cm)
	}
	// The first knock (again), from any stage but the first, restarts.
	// The window of the whole sequence: it also stamps the source in a
	// list of its own, which no later knock stamps; a later knock
	// advances only from a stamp within the window, checked first in the
	// chain that advances.
	start := b.chain(b.filter, chainName(kind, id, "1"))
	var outside, stampAll *Rule
	if span > 0 {
		all := b.keyedList(kind, id+"_in", 0, bits, false)
		stampAll = &Rule{Recent: &Recent{Name: all, Op: Set}, Origin: ref, Comment: cm}
		outside = &Rule{Recent: &Recent{Name: all, Op: Rcheck, Seconds: spanSecs, Invert: true},
			Target: Target{Kind: RETURN}, Origin: ref, Comment: cm}
	}
	if len(start.Rules) == 0 {
		start.Rules = append(start.Rules,
			&Rule{Target: Target{Kind: JUMP, Chain: reset.Name}, Origin: ref, Comment: cm},
			&Rule{Recent: &Recent{Name: stages[1], Op: Set}, Origin: ref, Comment: cm})
		if stampAll != nil {
			start.Rules = append(start.Rules, stampAll)
		}
	}
	// A knock on the next port or on the source's last counted one
	// again neither restarts nor resets (plan.Kept): a rule has one
	// recent match, for the first such stage, and jumps to a chain that
	// returns at the others before it runs miss.
	unlessKept := func(k int, p lang.Port, miss Target) *Rule {
		ks := plan.Kept(ports, p)
		not := at(ks[0])
		not.Invert = true
		if len(ks) > 1 {
			again := b.chain(b.filter, chainName(kind, id, fmt.Sprint(k), "again"))
			if len(again.Rules) == 0 {
				for _, s := range ks[1:] {
					again.Rules = append(again.Rules, &Rule{Recent: at(s), Target: Target{Kind: RETURN}, Origin: ref, Comment: cm})
				}
				again.Rules = append(again.Rules, &Rule{Target: miss, Origin: ref, Comment: cm})
			}
			miss = Target{Kind: JUMP, Chain: again.Name}
		}
		return base(p, not, miss)
	}
	c.Rules = append(c.Rules, unlessKept(1, ports[0], Target{Kind: JUMP, Chain: start.Name}))
	// A knock out of order resets the attempt and, with ignore, stamps
	// the source as ignored.
	wrong := Target{Kind: JUMP, Chain: reset.Name}
	if ignList != "" {
		wc := b.chain(b.filter, chainName(kind, id, "wrong"))
		if len(wc.Rules) == 0 {
			wc.Rules = append(wc.Rules, &Rule{Target: wrong, Origin: ref, Comment: cm},
				&Rule{Recent: &Recent{Name: ignList, Op: Set}, Origin: ref, Comment: cm})
		}
		wrong = Target{Kind: JUMP, Chain: wc.Name}
	}
	for k := 2; k <= n; k++ {
		p := ports[k-1]
		if !slices.Contains(ports[:k-1], p) {
			// The attempt is over, unless the knock is kept; a port that
			// comes back later in the sequence is reset once.
			c.Rules = append(c.Rules, unlessKept(k, p, wrong))
		}
		adv := b.chain(b.filter, chainName(kind, id, fmt.Sprint(k)))
		if len(adv.Rules) == 0 {
			if outside != nil {
				adv.Rules = append(adv.Rules, outside)
			}
			adv.Rules = append(adv.Rules, &Rule{Recent: &Recent{Name: stages[k-1], Op: Remove}, Origin: ref, Comment: cm})
			next := final
			if k < n {
				next = []*Recent{{Name: stages[k], Op: Set}}
			}
			for _, rc := range next {
				adv.Rules = append(adv.Rules, &Rule{Recent: rc, Origin: ref, Comment: cm})
			}
		}
		c.Rules = append(c.Rules, base(p, at(k-1), Target{Kind: JUMP, Chain: adv.Name}))
	}
}
