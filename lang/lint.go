package lang

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// This file holds the checks that look at the whole checked policy for
// the traps a statement sets with the others: a knock on a port the host
// serves, a door an allow or a close makes moot, duplicates, a family
// clause that shuts the other family out, a forward that takes the
// host's own service, and a limit that an earlier one keeps from ever
// refusing. They depend on no backend. The package doc lists their codes.

// astOf maps IR elements back to the statements they came from, for
// positions and for what the IR does not keep (whether a family clause
// was written, for one).
type astOf struct {
	services map[*Service]*ServiceStmt
	doors    map[*Door]*KnockStmt
	revokes  map[*Revoke][]*PortSpec
	limits   map[*Limit]*LimitStmt
}

func newAstOf() astOf {
	return astOf{
		services: map[*Service]*ServiceStmt{},
		doors:    map[*Door]*KnockStmt{},
		revokes:  map[*Revoke][]*PortSpec{},
		limits:   map[*Limit]*LimitStmt{},
	}
}

// specPos returns the position of the port spec of list that means p, or def.
func specPos(list []*PortSpec, p Port, def Pos) Pos {
	for _, ps := range list {
		proto := TCP
		if ps.Proto == "udp" {
			proto = UDP
		}
		if proto == p.Proto && ps.Num == itoa(int(p.Num)) {
			return ps.Position()
		}
	}
	return def
}

func (c *checker) lint() {
	c.allowAll()
	c.closeOnKnock()
	dups := c.duplicates()
	c.doorFamily()
	c.forwardTakes()
	c.deadLimits(dups)
}

// fams is a set of IP families.
type fams uint8

const (
	v4 fams = 1 << iota
	v6
)

func (f fams) String() string {
	switch f {
	case v4:
		return "IPv4"
	case v6:
		return "IPv6"
	}
	return "IPv4 and IPv6"
}

// famsOf returns the families a statement of family f on svc covers: a
// forwarded service is reached in its internal host's family only.
func famsOf(f Family, svc *Service) fams {
	out := v4 | v6
	switch f {
	case IPv4:
		out = v4
	case IPv6:
		out = v6
	}
	if svc.Forward.IsValid() {
		if svc.Forward.Unmap().Is4() {
			out &= v4
		} else {
			out &= v6
		}
	}
	return out
}

// everyone returns the families in which from (with families fs) names
// every source: all of fs when from is empty, else those with a /0.
func everyone(from []netip.Prefix, fs fams) fams {
	if len(from) == 0 {
		return fs
	}
	var out fams
	for _, p := range from {
		if p.Bits() == 0 {
			if p.Addr().Is4() {
				out |= v4
			} else {
				out |= v6
			}
		}
	}
	return out & fs
}

// overlap reports whether two from lists (empty: any source) share a source.
func overlap(a, b []netip.Prefix) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, p := range a {
		for _, q := range b {
			if p.Overlaps(q) {
				return true
			}
		}
	}
	return false
}

// covers reports whether every source of inner is a source of outer.
func covers(outer, inner []netip.Prefix) bool {
	if len(outer) == 0 {
		return true
	}
	if len(inner) == 0 {
		return everyone(outer, v4|v6) == v4|v6
	}
	for _, p := range inner {
		if !slices.ContainsFunc(outer, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) }) {
			return false
		}
	}
	return true
}

func before(a, b Pos) bool {
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Col < b.Col
}

// wellKnownKnock warns of a knock or close port that is the port of a
// built-in service the host probably serves (L20): every client of that
// service would knock, and the knock's drop would take its packets. A
// built-in name the policy redefines no longer names its usual port.
func (c *checker) wellKnownKnock(k knockPort) {
	for _, n := range sortedBuiltins() {
		if _, redefined := c.defined[n]; redefined || !slices.Contains(builtinServices[n], k.port) {
			continue
		}
		what := "knocks"
		if k.kind == "close" {
			what = "closes the door"
		}
		if k.pass {
			c.warnf(k.pos, LintWellKnownKnock, "pick a port nothing listens on, such as 1600",
				"%s port %s is the well-known port of %s: if this host serves %s, every %s client %s",
				k.kind, k.port, n, n, n, what)
			return
		}
		c.warnf(k.pos, LintWellKnownKnock, "pick a port nothing listens on, such as 1600",
			"%s port %s is the well-known port of %s: if this host serves %s, its packets are dropped and every %s client %s",
			k.kind, k.port, n, n, n, what)
		return
	}
}

// allowAll refuses an allow that admits every source of a family in
// which a door guards the same service (E18): the door would guard
// nothing, and the policy would be open where it reads closed.
func (c *checker) allowAll() {
	for _, a := range c.pol.Allows {
		all := everyone(a.From, famsOf(a.Family, a.Service))
		for _, d := range c.pol.Doors {
			if d.Service != a.Service {
				continue
			}
			both := all & famsOf(d.Family, d.Service)
			if both == 0 {
				continue
			}
			who := "every source"
			if both != famsOf(Both, a.Service) {
				who = "every " + both.String() + " source"
			}
			c.errorf(a.Pos, ErrAllowAll,
				fmt.Sprintf("name the sources that need no knock (allow %s from 192.168.0.0/16), or delete the knock to leave %s open", a.Service.Name, a.Service.Name),
				"allow %s admits %s without a knock: the door at line %d guards nothing", a.Service.Name, who, d.Pos.Line)
			break
		}
	}
}

// closeOnKnock looks for close ports of a service that are knock ports of
// one of its doors. When a door's last knock is a close port of a later
// statement, the close runs after the knock (statements on a shared port
// run in source order) and revokes the door at once: the door can never
// open (E19). Other shared ports are a slip (L21): a close before the
// last knock closes nothing, and a close on an earlier port of a
// sequence closes the door of a source that knocks again.
func (c *checker) closeOnKnock() {
	for _, d := range c.pol.Doors {
		last := len(d.Sequence) - 1
		for _, r := range c.pol.Revokes {
			if r.Service != d.Service || len(r.Ports) == 0 ||
				famsOf(r.Family, r.Service)&famsOf(d.Family, d.Service) == 0 || !overlap(r.From, d.From) {
				continue
			}
			for _, p := range r.Ports {
				i := slices.Index(d.Sequence, p)
				if i < 0 {
					continue
				}
				rpos := specPos(c.ast.revokes[r], p, r.Pos)
				switch {
				case i == last && before(d.Pos, r.Pos):
					msg := fmt.Sprintf("the door can never open: its last knock, %s, is also a close port of %s (line %d), which runs after the knock and revokes the door at once",
						p, d.Service.Name, r.Pos.Line)
					if famsOf(r.Family, r.Service)&famsOf(d.Family, d.Service) != famsOf(d.Family, d.Service) || !covers(r.From, d.From) {
						msg += ", for the sources both statements name"
					}
					c.errorf(specPos(c.ast.doors[d].Ports, p, d.Pos), ErrDeadDoor, "close on ports the knock does not use"+guards(p, d.Sequence), "%s", msg)
				case i == last:
					c.warnf(rpos, LintCloseOnKnock, "close on ports the knock does not use"+guards(p, d.Sequence),
						"close port %s closes nothing: the knock on it at line %d runs after the close and opens %s again", p, d.Pos.Line, d.Service.Name)
				default:
					c.warnf(rpos, LintCloseOnKnock, "close on ports the knock does not use",
						"close port %s is also a port of the knock sequence at line %d: a source that knocks the sequence again closes its own door on the way",
						p, d.Pos.Line)
				}
			}
		}
	}
}

// guards suggests the neighbours of a knock port that the sequence does
// not use, as Shorewall's SSHKnock guards 1600 with 1599 and 1601.
func guards(p Port, seq []Port) string {
	var s []string
	for _, n := range []int{int(p.Num) - 1, int(p.Num) + 1} {
		q := Port{Proto: p.Proto, Num: uint16(n)}
		if n < 1 || n > 65535 || slices.Contains(seq, q) {
			continue
		}
		if q.Proto == TCP {
			s = append(s, itoa(n))
		} else {
			s = append(s, q.String())
		}
	}
	if len(s) == 0 {
		return ""
	}
	return ", such as " + strings.Join(s, " and ")
}

// duplicates warns of a statement that means what an earlier one means
// (L22) and of a test that has the name of an earlier one (L23). It
// returns the repeated limits, which deadLimits leaves to L22.
func (c *checker) duplicates() map[*Limit]bool {
	type stmt struct {
		id  int
		pos Pos
		key string
	}
	var all []stmt
	for _, d := range c.pol.Doors {
		all = append(all, stmt{d.ID, d.Pos, fmt.Sprintf("door %p %v %d %d %d %v %d %d %v %d %s %d %s", d.Service, d.Sequence, d.Within, d.Span, d.Lifetime, d.Once, d.Mask4, d.Mask6, d.Pass, d.Ignore, fromKey(d.From), d.Family, logKey(d.Log))})
	}
	for _, r := range c.pol.Revokes {
		all = append(all, stmt{r.ID, r.Pos, fmt.Sprintf("revoke %p %v %v %d %d %s %d %s", r.Service, r.Ports, r.Sequence, r.Within, r.Span, fromKey(r.From), r.Family, logKey(r.Log))})
	}
	limits := map[string]*Limit{}
	for _, l := range c.pol.Limits {
		k := limitKey(l)
		limits[k] = l
		all = append(all, stmt{l.ID, l.Pos, k})
	}
	for _, a := range c.pol.Allows {
		all = append(all, stmt{a.ID, a.Pos, fmt.Sprintf("allow %p %s %d %s", a.Service, fromKey(a.From), a.Family, logKey(a.Log))})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].id < all[j].id })
	first := map[string]Pos{}
	dups := map[*Limit]bool{}
	for _, s := range all {
		p, ok := first[s.key]
		if !ok {
			first[s.key] = s.pos
			continue
		}
		c.warnf(s.pos, LintDuplicate, "delete one of them", "this statement repeats the one at line %d", p.Line)
		if l := limits[s.key]; l != nil && l.Pos == s.pos {
			dups[l] = true
		}
	}
	names := map[string]Pos{}
	for _, t := range c.pol.Tests {
		if p, ok := names[t.Name]; ok {
			c.warnf(t.Pos, LintDuplicateTest, "give each test its own name: kwl test reports each test by its name",
				"test %q has the name of the test at line %d", t.Name, p.Line)
			continue
		}
		names[t.Name] = t.Pos
	}
	return dups
}

func fromKey(from []netip.Prefix) string {
	s := make([]string, len(from))
	for i, p := range from {
		s[i] = p.String()
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func logKey(l *Log) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%s %q", l.Level, l.Prefix)
}

func limitKey(l *Limit) string {
	return fmt.Sprintf("limit %p %d %d %v %v %d %d %d %v %d %s", l.Service, l.Count, l.Window, l.Concurrent, l.PerSource, l.Mask4, l.Mask6, l.Ban, l.BanAll, l.Family, logKey(l.Log))
}

// doorFamily warns of a door whose family clause leaves its service
// closed to every source of the other family (L24): a knocked service
// drops new connections without an open door, in both families, and no
// door opens it in the other one. A door restricted by its from list
// says whom it is for, and is left alone.
func (c *checker) doorFamily() {
	for _, d := range c.pol.Doors {
		s := c.ast.doors[d]
		if s == nil || s.Family == nil || len(d.From) > 0 {
			continue
		}
		other := famsOf(Both, d.Service) &^ famsOf(d.Family, d.Service)
		if other == 0 {
			continue
		}
		open := false
		for _, e := range c.pol.Doors {
			open = open || e.Service == d.Service && famsOf(e.Family, e.Service)&other != 0
		}
		for _, a := range c.pol.Allows {
			open = open || a.Service == d.Service && everyone(a.From, famsOf(a.Family, a.Service))&other != 0
		}
		if open {
			continue
		}
		c.warnf(s.Family.Pos, LintDoorFamily,
			fmt.Sprintf("drop the family clause to open the door over both families, or add a door for %s: knock PORT opens %s for DUR family %s",
				other, d.Service.Name, strings.ToLower(other.String())),
			"family %s leaves %s closed to every %s source: %s is knocked, and no door opens it over %s",
			s.Family.Text, d.Service.Name, other, d.Service.Name, other)
	}
}

// forwardTakes warns of a forwarded service whose port is the port of a
// built-in service (L25): the DNAT takes the port at every address of
// this host, so the host's own service on it can no longer be reached.
func (c *checker) forwardTakes() {
	for _, svc := range c.pol.Services {
		s := c.ast.services[svc]
		if s == nil || !svc.Forward.IsValid() {
			continue
		}
		for _, p := range svc.Ports {
			for _, n := range sortedBuiltins() {
				if !slices.Contains(builtinServices[n], p) {
					continue
				}
				c.warnf(specPos(s.Ports, p, svc.Pos), LintForwardTakes,
					fmt.Sprintf("if this host runs its own %s, move it to another port; if it runs none, silence this with # kwl:ignore %s", n, LintForwardTakes),
					"service %s forwards %s at every address of this host to %s: this host's own %s on %s can no longer be reached",
					svc.Name, p, svc.Forward, n, p)
				break
			}
		}
	}
}

func sortedBuiltins() []string {
	names := make([]string, 0, len(builtinServices))
	for n := range builtinServices {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// deadLimits warns of a limit that can never refuse a connection, and so
// of a ban that can never fire (L26).
//
// The limits of a service run in policy order and the first that refuses
// drops; each counts only the connections that reach it and that it
// admits, at most N in any window T. So the connections that reach a
// limit L2 = N2/T2 are a subset of those an earlier limit L1 = N1/T1
// admitted. When L1's key is at least as coarse as L2's (a shared
// counter, or a shorter or equal prefix), every key of L2 lies within one
// key of L1, and L1 admits at most N1·⌈T2/T1⌉ connections of that key in
// any window of length T2: the window is covered by ⌈T2/T1⌉ windows of
// L1, and bursts of N1 spaced T1 apart reach the bound. L2 refuses only
// the N2+1st connection in a window, so it never refuses when that bound
// is at most N2 (and, with this L1 alone, only then). The check is made per
// family; the limit is dead when it is dead in every family it covers.
func (c *checker) deadLimits(dups map[*Limit]bool) {
	for j, l2 := range c.pol.Limits {
		if dups[l2] || l2.Concurrent {
			continue // a cap counts what is open, not what came: no rate bounds it
		}
		var by *Limit
		dead := true
		for _, f := range []fams{v4, v6} {
			if famsOf(l2.Family, l2.Service)&f == 0 {
				continue
			}
			l1 := stricter(c.pol.Limits[:j], l2, f)
			if l1 == nil {
				dead = false
				break
			}
			if by == nil {
				by = l1
			}
		}
		if !dead || by == nil {
			continue
		}
		n := int64(by.Count) * int64((l2.Window+by.Window-1)/by.Window)
		s2 := c.ast.limits[l2]
		window, ban := dur(l2.Window), dur(l2.Ban)
		if s2 != nil {
			window, ban = s2.Window.Text, s2.Ban.String()
		}
		reach := fmt.Sprintf("the limit at line %d (%s) lets at most %d connection%s %s through in any %s, and this limit refuses only the %s",
			by.Pos.Line, c.limitText(by), n, plural(n), keyPhrase(l2), window, ordinal(l2.Count+1))
		if l2.Ban > 0 {
			pos := l2.Pos
			if s2 != nil {
				pos = s2.BanPos
			}
			c.warnf(pos, LintDeadLimit,
				fmt.Sprintf("move this limit above the one at line %d, so that it counts the connections that one refuses, or drop the ban", by.Pos.Line),
				"ban %s can never fire: %s", ban, reach)
			continue
		}
		c.warnf(l2.Pos, LintDeadLimit, fmt.Sprintf("delete it, or make it stricter than the limit at line %d", by.Pos.Line),
			"this limit never refuses a connection: %s", reach)
	}
}

// stricter returns the first of earlier, limits of l2's service that run
// before it, that keeps l2 from ever refusing in family f, or nil.
func stricter(earlier []*Limit, l2 *Limit, f fams) *Limit {
	for _, l1 := range earlier {
		if l1.Service != l2.Service || l1.Concurrent || famsOf(l1.Family, l1.Service)&f == 0 || keyBits(l1, f) > keyBits(l2, f) {
			continue
		}
		// l1 admits at most Count·⌈T2/T1⌉ in any window of l2.
		k := int64((l2.Window + l1.Window - 1) / l1.Window)
		if k <= int64(l2.Count/l1.Count) {
			return l1
		}
	}
	return nil
}

// keyBits is the prefix length of a limit's counter key in family f; 0
// for a counter shared by all sources.
func keyBits(l *Limit, f fams) int {
	switch {
	case !l.PerSource:
		return 0
	case f == v4:
		return l.Mask4
	}
	return l.Mask6
}

func keyPhrase(l *Limit) string {
	switch {
	case !l.PerSource:
		return "from all sources together"
	case l.Mask4 == 32 && l.Mask6 == 128:
		return "from one source"
	}
	return "from one group of sources"
}

// limitText writes a limit's count, window and key as the policy does.
func (c *checker) limitText(l *Limit) string {
	s := itoa(l.Count) + "/" + dur(l.Window)
	if st := c.ast.limits[l]; st != nil {
		s = countText(st)
	} else if l.Concurrent {
		s = itoa(l.Count) + " concurrent"
	}
	switch {
	case !l.PerSource:
		return s + " shared"
	case l.Mask6 != 128:
		return s + " per source/" + itoa(l.Mask4) + "/" + itoa(l.Mask6)
	case l.Mask4 != 32:
		return s + " per source/" + itoa(l.Mask4)
	}
	return s + " per source"
}

// dur writes a duration as the language does: 1h30m, 60s, 500ms.
func dur(d time.Duration) string {
	var b strings.Builder
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
		if n := d / u.d; n > 0 {
			b.WriteString(itoa(int(n)) + u.name)
			d -= n * u.d
		}
	}
	if d > 0 || b.Len() == 0 {
		b.WriteString(itoa(int(d)) + "ns")
	}
	return b.String()
}

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// ordinal writes 1st, 2nd, 3rd, 4th, 11th, 21st ...
func ordinal(n int) string {
	suffix := "th"
	if n%100 < 11 || n%100 > 13 {
		switch n % 10 {
		case 1:
			suffix = "st"
		case 2:
			suffix = "nd"
		case 3:
			suffix = "rd"
		}
	}
	return itoa(n) + suffix
}
