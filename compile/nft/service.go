package nft

import (
	"fmt"
	"net/netip"
	"time"

	"kwl.dev/kwl/compile/internal/plan"
	"kwl.dev/kwl/lang"
)

// maxInlineDoors is the most doors whose lookups the guard of a service
// holds in one rule; a service with more doors gets a guard chain. The
// kernel refuses a rule of more than 128 expressions (nf_tables_newrule).
const maxInlineDoors = 8

// serviceChain builds the chain of a service, or nil when no statement
// gives it a rule. Its rules, in order: allows accept; banned sources
// drop; a knocked service drops new connections from sources with no
// open door; a new TCP packet that is not a SYN is accepted as below,
// uncounted; limits drop what is over them; open doors (or, for a service
// that is only limited, any new connection under the limits) accept.
func (l *lowerer) serviceChain(s *lang.Service) *Chain {
	doors := l.ids.DoorsOf(s)
	limits := l.ids.LimitsOf(s)
	allows := l.ids.AllowsOf(s)
	if len(allows) == 0 && len(limits) == 0 && !(s.Guarded || len(doors) > 0) {
		return nil
	}
	c := &Chain{Name: "svc_" + l.ids.Service[s]}
	add := func(r *Rule) { c.Rules = append(c.Rules, r) }
	svcFams := plan.ServiceFamilies(s)

	for _, a := range allows {
		for _, pre := range l.famPrefixes(a.Family, a.From, s) {
			add(&Rule{Exprs: cat(pre, logExpr(a.Log, "allow", s), one(&Verdict{Kind: Accept})),
				Origin: a.Ref, Comment: comment("allow", s, a.Ref)})
		}
	}

	for _, lim := range limits {
		if lim.Ban <= 0 {
			continue
		}
		for _, f := range plan.Families(lim.Family, nil, s) {
			c.Rules = append(c.Rules, refuse(s, lim.Reject,
				one(nfproto(f), ctNew(), &Lookup{Set: l.banSet(lim, f), Key: key(f, plan.Mask(lim, f))}),
				logExpr(lim.Log, "limit", s), lim.Ref, comment("ban", s, lim.Ref))...)
		}
	}

	if s.Guarded || len(doors) > 0 {
		for _, f := range svcFams {
			var open []Expr
			for _, d := range doors {
				if plan.Covers(plan.Families(d.Family, d.From, d.Service), f) {
					open = append(open, &Lookup{Set: l.doorSet(d, f), Key: key(f, plan.DoorMask(d, f))})
				}
			}
			var origin lang.Ref
			var lg *lang.Log
			reject := false
			if len(doors) > 0 {
				origin, lg, reject = doors[0].Ref, doors[0].Log, doors[0].Reject
			}
			cm := fmt.Sprintf("%s is knocked: no open door, no entry", s.Name)
			if len(open) <= maxInlineDoors {
				es := one(nfproto(f), ctNew())
				for _, e := range open {
					lk := *e.(*Lookup)
					lk.Neg = true
					es = append(es, &lk)
				}
				c.Rules = append(c.Rules, refuse(s, reject, es, logExpr(lg, "knock", s), origin, cm)...)
				continue
			}
			// Many doors: a chain returns for a source with an open door
			// and refuses the rest, so that no rule grows with the doors.
			gc := &Chain{Name: fmt.Sprintf("guard_%s%s", l.ids.Service[s], fsuffix(f))}
			for _, e := range open {
				gc.Rules = append(gc.Rules, &Rule{Exprs: one(e, &Verdict{Kind: Return}), Origin: origin, Comment: cm})
			}
			gc.Rules = append(gc.Rules, refuse(s, reject, nil, logExpr(lg, "knock", s), origin, cm)...)
			l.helpers = append(l.helpers, gc)
			add(&Rule{Exprs: one(nfproto(f), ctNew(), &Verdict{Kind: Jump, Chain: gc.Name}), Origin: origin, Comment: cm})
		}
	}

	// Limits count connection attempts, and a single-use door admits
	// one. A TCP packet that conntrack calls new without being a SYN (a
	// flow picked up mid-stream, an ACK scan) goes past the limits to the
	// accepts, as if there were no limit, and leaves the door as it is.
	if (len(limits) > 0 || plan.AnyOnce(doors)) && plan.HasProto(s, lang.TCP) {
		l.accepts(c, s, doors, limits, notSYN())
	}
	for _, lim := range limits {
		l.limitRules(c, lim)
	}
	l.accepts(c, s, doors, limits, nil)
	return c
}

// accepts emits the end of a service chain, each rule led by pre: open
// doors accept, or, for a service that is only limited, any new
// connection that got past the limits. Without pre, the rules take
// connection attempts, which close a single-use door (delete the source
// from its set) as they are accepted.
func (l *lowerer) accepts(c *Chain, s *lang.Service, doors []*lang.Door, limits []*lang.Limit, pre []Expr) {
	add := func(r *Rule) {
		r.Exprs = cat(pre, r.Exprs)
		c.Rules = append(c.Rules, r)
	}
	svcFams := plan.ServiceFamilies(s)
	if len(doors) > 0 {
		for _, d := range doors {
			for _, f := range plan.Families(d.Family, d.From, d.Service) {
				es := one(nfproto(f), ctNew(), &Lookup{Set: l.doorSet(d, f), Key: key(f, plan.DoorMask(d, f))})
				if d.Once && pre == nil {
					es = append(es, &Dynset{Op: Delete, Set: l.doorSet(d, f), Key: key(f, plan.DoorMask(d, f))})
				}
				add(&Rule{
					Exprs:  cat(es, logExpr(d.Log, "knock", s), one(&Verdict{Kind: Accept})),
					Origin: d.Ref, Comment: comment("knock", s, d.Ref),
				})
			}
		}
	} else if len(limits) > 0 {
		// The accept of a connection under the limits is the first limit's
		// of its family.
		first := map[plan.Fam]*lang.Limit{}
		for _, f := range svcFams {
			for _, lim := range limits {
				if plan.Covers(plan.Families(lim.Family, nil, s), f) {
					first[f] = lim
					break
				}
			}
		}
		if len(svcFams) == 2 && first[plan.V4] != nil && first[plan.V4] == first[plan.V6] {
			lim := first[plan.V4]
			add(&Rule{Exprs: one(ctNew(), &Verdict{Kind: Accept}),
				Origin: lim.Ref, Comment: comment("limit", s, lim.Ref)})
		} else {
			for _, f := range svcFams {
				if lim := first[f]; lim != nil {
					add(&Rule{Exprs: one(nfproto(f), ctNew(), &Verdict{Kind: Accept}),
						Origin: lim.Ref, Comment: comment("limit", s, lim.Ref)})
				}
			}
		}
	}
}

// famPrefixes returns the leading matches of a statement's rules: none
// when it covers every source of both families, else one list per family
// (nfproto and sources).
func (l *lowerer) famPrefixes(fam lang.Family, from []netip.Prefix, s *lang.Service) [][]Expr {
	fams := plan.Families(fam, from, s)
	if len(fams) == 2 && len(from) == 0 {
		return [][]Expr{nil}
	}
	var out [][]Expr
	for _, f := range fams {
		out = append(out, cat(one(nfproto(f)), srcMatch(from, f)))
	}
	return out
}

func (l *lowerer) banSet(lim *lang.Limit, f plan.Fam) string {
	return l.set("ban_"+l.ids.Limit[lim]+fsuffix(f), f, lim.Ban, lim.Ref,
		fmt.Sprintf("sources banned from %s, line %d", lim.Service.Name, lim.Pos.Line))
}

// limitRules emits a limit: at most Count new connections admitted in
// any window of length Window, for each (masked) source or for all
// sources together.
//
// The limit is a chain of Count slots, each a set whose elements live
// for the window (see Tick). A connection takes the first free slot:
// `add @slot { KEY limit rate 1/week burst 1 packets }` creates a missing
// element, whose own bucket starts with its one token, so the rule
// matches and returns; an existing element is never refreshed by add and
// has no token left, so the rule does not match and the next slot is
// tried (net/netfilter/nft_dynset.c, nft_limit.c). A connection that finds
// every slot taken is refused. Each admitted connection thus holds one
// slot for exactly the window, and refused ones hold none. The one-token
// bucket makes two connections racing for a free slot take it once.
//
// Per source the key is the masked address, one set per slot and family;
// for all sources it is ct state, which is "new" for every packet that
// reaches the limit, so one set per slot serves both families.
func (l *lowerer) limitRules(c *Chain, lim *lang.Limit) {
	if lim.Concurrent {
		l.capRules(c, lim)
		return
	}
	s := lim.Service
	id := l.ids.Limit[lim]
	cm := comment("limit", s, lim.Ref)
	lc := &Chain{Name: "lim_" + id}
	slot := func(k int, f plan.Fam) (string, Key) {
		what := fmt.Sprintf("slot %d of %d of the limit of %s, line %d", k, lim.Count, s.Name, lim.Pos.Line)
		if !lim.PerSource {
			return l.typedSet(fmt.Sprintf("lim_%s_%d", id, k), CtStateKey, lim.Window, lim.Ref, what), Key{Field: CtState}
		}
		return l.set(fmt.Sprintf("lim_%s_%d%s", id, k, fsuffix(f)), f, lim.Window, lim.Ref, what), key(f, plan.Mask(lim, f))
	}
	fams := plan.Families(lim.Family, nil, s)
	var pre []Expr
	if len(fams) == 1 && len(plan.ServiceFamilies(s)) == 2 {
		pre = one(nfproto(fams[0]))
	}
	if lim.PerSource {
		for _, f := range fams {
			for k := 1; k <= lim.Count; k++ {
				set, key := slot(k, f)
				lc.Rules = append(lc.Rules, &Rule{
					Exprs:  one(nfproto(f), &Dynset{Op: Add, Set: set, Key: key, Limit: slotLimit()}, &Verdict{Kind: Return}),
					Origin: lim.Ref, Comment: cm,
				})
			}
		}
	} else {
		for k := 1; k <= lim.Count; k++ {
			set, key := slot(k, 0)
			lc.Rules = append(lc.Rules, &Rule{
				Exprs:  cat(pre, one(&Dynset{Op: Add, Set: set, Key: key, Limit: slotLimit()}, &Verdict{Kind: Return})),
				Origin: lim.Ref, Comment: cm,
			})
		}
	}
	lc.Rules = append(lc.Rules, l.overRules(lim, cm)...)
	l.overChains = append(l.overChains, lc)
	c.Rules = append(c.Rules, &Rule{Exprs: cat(pre, one(ctNew(), &Verdict{Kind: Jump, Chain: lc.Name})), Origin: lim.Ref, Comment: cm})
	if lim.PerSource || lim.Ban > 0 {
		l.setsFull(lim, "a full slot set refuses new sources")
	}
}

// setsFull warns (L07) of what a limit's sets do when full: what, and a
// full ban set's.
func (l *lowerer) setsFull(lim *lang.Limit, what string) {
	if lim.Ban > 0 {
		what += ", and a full ban set bans no more sources (their connections are still refused)"
	}
	l.diags.Add(lim.Pos, lang.Note, lang.LintCapacity,
		fmt.Sprintf("each set holds %d sources: an add that finds the set full creates nothing and does not match (nft_dynset), so %s", DefaultSetSize, what),
		"")
}

// capRules emits a cap of concurrent connections: a chain that returns
// when the key holds at most Count connections, the new one included, and
// refuses (or bans) the others, as a limit's chain does. The count is ct
// count's (net/netfilter/nft_connlimit.c, nf_conncount.c): per source an
// element of a set without timeouts, whose list of connections the kernel
// keeps with it (a set with timeouts is refused for it); for all sources
// the rule's own list. A connection counts while conntrack keeps it, a TCP
// one until TIME_WAIT or CLOSE.
func (l *lowerer) capRules(c *Chain, lim *lang.Limit) {
	s := lim.Service
	id := l.ids.Limit[lim]
	cm := comment("limit", s, lim.Ref)
	lc := &Chain{Name: "lim_" + id}
	fams := plan.Families(lim.Family, nil, s)
	var pre []Expr
	if len(fams) == 1 && len(plan.ServiceFamilies(s)) == 2 {
		pre = one(nfproto(fams[0]))
	}
	count := &Connlimit{Count: uint32(lim.Count)}
	if lim.PerSource {
		for _, f := range fams {
			set := l.untimedSet("cap_"+id+fsuffix(f), f, lim.Ref,
				fmt.Sprintf("connections of each source to %s, line %d", s.Name, lim.Pos.Line))
			lc.Rules = append(lc.Rules, &Rule{
				Exprs:  one(nfproto(f), &Dynset{Op: Add, Set: set, Key: key(f, plan.Mask(lim, f)), Connlimit: count}, &Verdict{Kind: Return}),
				Origin: lim.Ref, Comment: cm,
			})
		}
		l.setsFull(lim, "a full cap set refuses new sources")
	} else {
		lc.Rules = append(lc.Rules, &Rule{Exprs: cat(pre, one(count, &Verdict{Kind: Return})), Origin: lim.Ref, Comment: cm})
	}
	lc.Rules = append(lc.Rules, l.overRules(lim, cm)...)
	l.overChains = append(l.overChains, lc)
	c.Rules = append(c.Rules, &Rule{Exprs: cat(pre, one(ctNew(), &Verdict{Kind: Jump, Chain: lc.Name})), Origin: lim.Ref, Comment: cm})
}

// slotLimit is the bucket of a limit slot's element: one token, which
// the connection that creates the element takes, refilled too slowly to
// come back before the element expires (a limit's window is at most a
// day: lang.MaxLimitWindow).
func slotLimit() *Limit {
	return &Limit{Rate: 1, Unit: 7 * 24 * time.Hour, Burst: 1}
}

// overRules end a limit's chain, for a connection over the limit: log
// and refuse, or a goto to a chain that bans the source, logs and refuses.
// The ban is a chain of its own so that one global bucket serves both
// families, and so that a full ban set (where add does not match) still
// refuses.
func (l *lowerer) overRules(lim *lang.Limit, cm string) []*Rule {
	s := lim.Service
	if lim.Ban <= 0 {
		return refuse(s, lim.Reject, nil, logExpr(lim.Log, "limit", s), lim.Ref, cm)
	}
	c := &Chain{Name: "over_" + l.ids.Limit[lim]}
	for _, f := range plan.Families(lim.Family, nil, s) {
		c.Rules = append(c.Rules, &Rule{
			Exprs:  one(nfproto(f), &Dynset{Op: Update, Set: l.banSet(lim, f), Key: key(f, plan.Mask(lim, f))}),
			Origin: lim.Ref, Comment: comment("ban", s, lim.Ref),
		})
	}
	c.Rules = append(c.Rules, refuse(s, lim.Reject, nil, logExpr(lim.Log, "limit", s), lim.Ref, comment("limit", s, lim.Ref))...)
	l.overChains = append(l.overChains, c)
	return []*Rule{{Exprs: one(&Verdict{Kind: Goto, Chain: c.Name}), Origin: lim.Ref, Comment: cm}}
}

// refuse returns the rules that refuse a new connection to s that pre
// matches, after lg logs it: a drop, or with reject what a closed port
// answers, a TCP reset to TCP and an ICMP or ICMPv6 port unreachable to
// anything else (net/netfilter/nft_reject_inet.c). A service of both
// protocols takes two rules, the second for what the first's protocol
// match lets through; lg is in the first only, so it logs once (limitLogs
// gives it a rule of its own). pre must be stateless, since a packet may
// run it twice.
func refuse(s *lang.Service, reject bool, pre, lg []Expr, origin lang.Ref, comment string) []*Rule {
	var tails [][]Expr
	switch {
	case !reject:
		tails = [][]Expr{{&Verdict{Kind: Drop}}}
	case !plan.HasProto(s, lang.TCP):
		tails = [][]Expr{{&Verdict{Kind: Reject}}}
	case !plan.HasProto(s, lang.UDP):
		tails = [][]Expr{{tcpOnly(), &Verdict{Kind: RejectTCPReset}}}
	default:
		tails = [][]Expr{{tcpOnly(), &Verdict{Kind: RejectTCPReset}}, {&Verdict{Kind: Reject}}}
	}
	var rules []*Rule
	for i, t := range tails {
		var log []Expr
		if i == 0 {
			log = lg
		}
		rules = append(rules, &Rule{Exprs: cat(pre, log, t), Origin: origin, Comment: comment})
	}
	return rules
}

// banAllRules drop every packet from a source that a ban on all traffic
// holds, on every port and protocol: they run in the input chain after
// the established accept (a banned source's open connections stay) and
// before the knocks (its knocks count for nothing while it is banned).
func (l *lowerer) banAllRules() []*Rule {
	var rules []*Rule
	for _, lim := range l.p.Limits {
		if lim.Ban <= 0 || !lim.BanAll {
			continue
		}
		s := lim.Service
		for _, f := range plan.Families(lim.Family, nil, s) {
			rules = append(rules, &Rule{
				Exprs: cat(one(nfproto(f), &Lookup{Set: l.banSet(lim, f), Key: key(f, plan.Mask(lim, f))}),
					logExpr(lim.Log, "limit", s), one(&Verdict{Kind: Drop})),
				Origin: lim.Ref, Comment: comment("ban", s, lim.Ref) + ": every port",
			})
		}
	}
	return rules
}

// tcpOnly matches TCP packets: the dependency of a TCP reset.
func tcpOnly() *Match { return &Match{Field: L4Proto, Values: []any{lang.TCP}} }
