package nft

import (
	"fmt"
	"net/netip"
	"time"

	"kwl.dev/kwl/compile/internal/plan"
	"kwl.dev/kwl/lang"
)

// serviceChain builds the chain of a service, or nil when no statement
// gives it a rule. Its rules, in order: allows accept; banned sources
// drop; a knocked service drops new connections from sources with no
// open door; a new TCP packet that is not a SYN is accepted as below,
// uncounted; limits drop what is over them; open doors (or, for a service
// that is only limited, any new connection under the limits) accept.
func (l *lowerer) serviceChain(s *lang.Service) *Chain {
	doors := plan.DoorsOf(l.p, s)
	limits := plan.LimitsOf(l.p, s)
	allows := plan.AllowsOf(l.p, s)
	if len(allows) == 0 && len(limits) == 0 && !(s.Guarded || len(doors) > 0) {
		return nil
	}
	c := &Chain{Name: "svc_" + l.ids.Service[s]}
	add := func(r *Rule) { c.Rules = append(c.Rules, r) }
	svcFams := plan.ServiceFamilies(s)

	for _, a := range allows {
		for _, pre := range l.famPrefixes(a.Family, a.From, s) {
			add(&Rule{Exprs: cat(pre, logExpr(a.Log, "allow", s), one(&Verdict{Kind: Accept})),
				Origin: a.Pos, Comment: comment("allow", s, a.Pos)})
		}
	}

	for _, lim := range limits {
		if lim.Ban <= 0 {
			continue
		}
		for _, f := range plan.Families(lim.Family, nil, s) {
			add(&Rule{
				Exprs: cat(one(nfproto(f), ctNew(), &Lookup{Set: l.banSet(lim, f), Key: key(f, plan.Mask(lim, f))}),
					logExpr(lim.Log, "limit", s), one(&Verdict{Kind: Drop})),
				Origin: lim.Pos, Comment: comment("ban", s, lim.Pos),
			})
		}
	}

	if s.Guarded || len(doors) > 0 {
		for _, f := range svcFams {
			es := one(nfproto(f), ctNew())
			for _, d := range doors {
				if plan.Covers(plan.Families(d.Family, d.From, d.Service), f) {
					es = append(es, &Lookup{Set: l.doorSet(d, f), Key: key(f, 0), Neg: true})
				}
			}
			var origin lang.Pos
			var lg *lang.Log
			if len(doors) > 0 {
				origin, lg = doors[0].Pos, doors[0].Log
			}
			add(&Rule{Exprs: cat(es, logExpr(lg, "knock", s), one(&Verdict{Kind: Drop})),
				Origin: origin, Comment: fmt.Sprintf("%s is knocked: no open door, no entry", s.Name)})
		}
	}

	// Limits count connection attempts. A TCP packet that conntrack
	// calls new without being a SYN (a flow picked up mid-stream, an
	// ACK scan) goes past them to the accepts, as if there were no limit.
	if len(limits) > 0 && plan.HasProto(s, lang.TCP) {
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
// connection that got past the limits.
func (l *lowerer) accepts(c *Chain, s *lang.Service, doors []*lang.Door, limits []*lang.Limit, pre []Expr) {
	add := func(r *Rule) {
		r.Exprs = cat(pre, r.Exprs)
		c.Rules = append(c.Rules, r)
	}
	svcFams := plan.ServiceFamilies(s)
	if len(doors) > 0 {
		for _, d := range doors {
			for _, f := range plan.Families(d.Family, d.From, d.Service) {
				add(&Rule{
					Exprs:  cat(one(nfproto(f), ctNew(), &Lookup{Set: l.doorSet(d, f), Key: key(f, 0)}), logExpr(d.Log, "knock", s), one(&Verdict{Kind: Accept})),
					Origin: d.Pos, Comment: comment("knock", s, d.Pos),
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
			add(&Rule{Exprs: cat(one(ctNew()), logExpr(lim.Log, "limit", s), one(&Verdict{Kind: Accept})),
				Origin: lim.Pos, Comment: comment("limit", s, lim.Pos)})
		} else {
			for _, f := range svcFams {
				if lim := first[f]; lim != nil {
					add(&Rule{Exprs: cat(one(nfproto(f), ctNew()), logExpr(lim.Log, "limit", s), one(&Verdict{Kind: Accept})),
						Origin: lim.Pos, Comment: comment("limit", s, lim.Pos)})
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
	return l.set("ban_"+l.ids.Limit[lim]+fsuffix(f), f, lim.Ban, lim.Pos,
		fmt.Sprintf("sources banned from %s, line %d", lim.Service.Name, lim.Pos.Line))
}

// limitRules emits a limit: per source, each (masked) source's element of
// the lim set carries its own token bucket (nft_limit_clone); globally, one
// bucket for all. The bucket holds Count tokens and refills at Count per
// Window; `over` matches the packets that find it empty, which take no
// token (net/netfilter/nft_limit.c). Over the limit: drop, or ban then
// drop.
func (l *lowerer) limitRules(c *Chain, lim *lang.Limit) {
	s := lim.Service
	bucket := l.bucket(lim)
	over := l.overVerdict(lim)
	cm := comment("limit", s, lim.Pos)
	if lim.PerSource {
		for _, f := range plan.Families(lim.Family, nil, s) {
			set := l.set("lim_"+l.ids.Limit[lim]+fsuffix(f), f, lim.Window, lim.Pos,
				fmt.Sprintf("per-source counters of %s, line %d", s.Name, lim.Pos.Line))
			b := *bucket
			c.Rules = append(c.Rules, &Rule{
				Exprs:  cat(one(nfproto(f), ctNew(), &Dynset{Op: Update, Set: set, Key: key(f, plan.Mask(lim, f)), Limit: &b}), over),
				Origin: lim.Pos, Comment: cm,
			})
		}
		l.warnBucket(lim, "each source")
		return
	}
	var pre []Expr
	if fams := plan.Families(lim.Family, nil, s); len(fams) == 1 && len(plan.ServiceFamilies(s)) == 2 {
		pre = one(nfproto(fams[0]))
	}
	c.Rules = append(c.Rules, &Rule{Exprs: cat(pre, one(ctNew(), bucket), over), Origin: lim.Pos, Comment: cm})
	l.warnBucket(lim, "all sources together")
}

// overVerdict is the end of an over-limit rule: log and drop, or a jump to
// a chain that bans the source, logs and drops. The ban is a chain of its
// own so that one global bucket serves both families, and so that a full
// ban set (where add does not match) still drops.
func (l *lowerer) overVerdict(lim *lang.Limit) []Expr {
	s := lim.Service
	if lim.Ban <= 0 {
		return cat(logExpr(lim.Log, "limit", s), one(&Verdict{Kind: Drop}))
	}
	c := &Chain{Name: "over_" + l.ids.Limit[lim]}
	for _, f := range plan.Families(lim.Family, nil, s) {
		c.Rules = append(c.Rules, &Rule{
			Exprs:  one(nfproto(f), &Dynset{Op: Update, Set: l.banSet(lim, f), Key: key(f, plan.Mask(lim, f))}),
			Origin: lim.Pos, Comment: comment("ban", s, lim.Pos),
		})
	}
	c.Rules = append(c.Rules, &Rule{Exprs: cat(logExpr(lim.Log, "limit", s), one(&Verdict{Kind: Drop})),
		Origin: lim.Pos, Comment: comment("limit", s, lim.Pos)})
	l.overChains = append(l.overChains, c)
	return one(&Verdict{Kind: Goto, Chain: c.Name})
}

// units are nftables' limit units, shortest first.
var units = []time.Duration{time.Second, time.Minute, time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// bucket returns the token bucket of a limit: Count packets of burst,
// refilled at Count per Window, expressed in the shortest unit that gives
// a whole rate (3/20s is 9/minute).
func (l *lowerer) bucket(lim *lang.Limit) *Limit {
	count, win := uint64(lim.Count), lim.Window
	for _, u := range units {
		if num := count * uint64(u); num%uint64(win) == 0 {
			return &Limit{Rate: num / uint64(win), Unit: u, Burst: uint32(lim.Count), Over: true}
		}
	}
	u := units[len(units)-1]
	rate := (count*uint64(u) + uint64(win)/2) / uint64(win)
	if rate == 0 {
		rate = 1
	}
	l.diags.Add(lim.Pos, lang.Warning, "L13",
		fmt.Sprintf("nftables counts rates per second, minute, hour, day or week: %d/%s is rounded to %d/week", lim.Count, plan.Dur(lim.Window), rate), "")
	return &Limit{Rate: rate, Unit: u, Burst: uint32(lim.Count), Over: true}
}

func (l *lowerer) warnBucket(lim *lang.Limit, who string) {
	refill := lim.Window / time.Duration(lim.Count)
	l.diags.Add(lim.Pos, lang.Warning, "L13",
		fmt.Sprintf("nftables limits with a token bucket: %s may open %d connections at once, then one every %s, while %d/%s means at most %d in any %s",
			who, lim.Count, plan.Dur(refill), lim.Count, plan.Dur(lim.Window), lim.Count, plan.Dur(lim.Window)),
		"")
	if lim.PerSource || lim.Ban > 0 {
		what := "a full limit set stops limiting new sources"
		if lim.Ban > 0 {
			what += ", and a full ban set stops banning"
		}
		l.diags.Add(lim.Pos, lang.Warning, "L07",
			fmt.Sprintf("each set holds %d sources: an update that finds the set full creates nothing and does not match (nft_dynset), so %s: the limit fails open", SetSize, what),
			"")
	}
}
