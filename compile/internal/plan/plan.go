// Package plan holds what both backends (compile/nft and compile/iptables)
// derive from a policy before they lower it: the IP families a statement
// covers, stable readable identifiers for services and statements (from
// which set, list and chain names are made), the order in which knock
// statements run, and the warnings that do not depend on the backend.
package plan

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"kwl.dev/kwl/lang"
)

// Fam is an IP family: 4 or 6.
type Fam int

// The families, in the order the backends emit them.
const (
	V4 Fam = 4
	V6 Fam = 6
)

// All is both families, IPv4 first.
var All = []Fam{V4, V6}

// Has reports whether the prefix belongs to family f.
func (f Fam) Has(p netip.Prefix) bool { return p.Addr().Unmap().Is4() == (f == V4) }

// Bits is the address length of the family.
func (f Fam) Bits() int {
	if f == V4 {
		return 32
	}
	return 128
}

// Families returns the families a statement covers: those its family
// clause allows, narrowed to the families of its sources when it has any,
// and to the family of the internal host when its service is forwarded.
func Families(fam lang.Family, from []netip.Prefix, svc *lang.Service) []Fam {
	var out []Fam
	for _, f := range All {
		if fam == lang.IPv4 && f != V4 || fam == lang.IPv6 && f != V6 {
			continue
		}
		if svc != nil && svc.Forward.IsValid() && svc.Forward.Unmap().Is4() != (f == V4) {
			continue
		}
		if len(from) > 0 && len(From(from, f)) == 0 {
			continue
		}
		out = append(out, f)
	}
	return out
}

// Covers reports whether fs holds f.
func Covers(fs []Fam, f Fam) bool {
	for _, x := range fs {
		if x == f {
			return true
		}
	}
	return false
}

// ServiceFamilies returns the families a service is reached by: both,
// or the family of its internal host when it is forwarded.
func ServiceFamilies(s *lang.Service) []Fam { return Families(lang.Both, nil, s) }

// From returns the prefixes of family f, masked, without those contained
// in another one of the list, sorted. A source then matches at most one of
// them, so that a rule rendered once per prefix (iptables -s a,b) records
// a hit once.
func From(from []netip.Prefix, f Fam) []netip.Prefix {
	var ps []netip.Prefix
	for _, p := range from {
		if !f.Has(p) {
			continue
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
		ps = append(ps, p)
	}
	// Sorted by address, a network before the networks it holds: a
	// prefix contained in another comes after it, with only prefixes it
	// contains too in between (two prefixes are nested or disjoint), so
	// comparing each with the last one kept finds every containment in
	// one pass.
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
	var out []netip.Prefix
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

// Mask returns the prefix length of a limit's per-source key in family f;
// the full address when the policy gives none.
func Mask(l *lang.Limit, f Fam) int { return prefixLen(l.Mask4, l.Mask6, f) }

// DoorMask is Mask for a door: the prefix length of family f that the
// door, its knocks and its sequence are keyed by.
func DoorMask(d *lang.Door, f Fam) int { return prefixLen(d.Mask4, d.Mask6, f) }

func prefixLen(m4, m6 int, f Fam) int {
	m := m4
	if f == V6 {
		m = m6
	}
	if m <= 0 || m > f.Bits() {
		return f.Bits()
	}
	return m
}

// IDs are the readable, stable identifiers of a policy's services and
// statements. A statement's id is its service's, with a number appended
// for the second and later statements of the same kind on that service
// ("ssh", "ssh_2"), so that names survive edits elsewhere in the policy.
type IDs struct {
	Service map[*lang.Service]string
	Door    map[*lang.Door]string
	Revoke  map[*lang.Revoke]string
	Limit   map[*lang.Limit]string

	// The statements of each service, in policy order, so that a
	// backend finds them in time linear in the policy's size.
	doors  map[*lang.Service][]*lang.Door
	limits map[*lang.Service][]*lang.Limit
	allows map[*lang.Service][]*lang.Allow
}

// Assign gives every service and statement of p its identifier.
func Assign(p *lang.Policy) *IDs {
	ids := &IDs{
		Service: map[*lang.Service]string{},
		Door:    map[*lang.Door]string{},
		Revoke:  map[*lang.Revoke]string{},
		Limit:   map[*lang.Limit]string{},
		doors:   map[*lang.Service][]*lang.Door{},
		limits:  map[*lang.Service][]*lang.Limit{},
		allows:  map[*lang.Service][]*lang.Allow{},
	}
	for _, d := range p.Doors {
		ids.doors[d.Service] = append(ids.doors[d.Service], d)
	}
	for _, l := range p.Limits {
		ids.limits[l.Service] = append(ids.limits[l.Service], l)
	}
	for _, a := range p.Allows {
		ids.allows[a.Service] = append(ids.allows[a.Service], a)
	}
	used := map[string]bool{}
	for _, s := range p.Services {
		base := Sanitize(s.Name)
		id := base
		for n := 2; used[id]; n++ {
			id = fmt.Sprintf("%s%d", base, n)
		}
		used[id] = true
		ids.Service[s] = id
	}
	count := map[string]int{}
	next := func(kind string, s *lang.Service) string {
		id := ids.Service[s]
		if id == "" {
			id = Sanitize(s.Name)
		}
		count[kind+"/"+id]++
		if n := count[kind+"/"+id]; n > 1 {
			return fmt.Sprintf("%s_%d", id, n)
		}
		return id
	}
	for _, d := range p.Doors {
		ids.Door[d] = next("door", d.Service)
	}
	for _, r := range p.Revokes {
		ids.Revoke[r] = next("revoke", r.Service)
	}
	for _, l := range p.Limits {
		ids.Limit[l] = next("limit", l.Service)
	}
	return ids
}

// Sanitize maps a name to the characters every backend accepts in set,
// list and chain names: letters, digits and '_'.
func Sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

// Knock is a statement that reacts to knock ports: a door or a revoke.
// A statement of several services ("knock 1600 opens ssh, https") is
// one Knock: Door (or Revoke) is its first service's, and Doors (or
// Revokes) holds every one, in the order named.
type Knock struct {
	Door    *lang.Door
	Revoke  *lang.Revoke
	Doors   []*lang.Door
	Revokes []*lang.Revoke
}

// Ref names the statement.
func (k Knock) Ref() lang.Ref {
	if k.Door != nil {
		return k.Door.Ref
	}
	return k.Revoke.Ref
}

// Pass reports whether the statement's knocks go on to the rest of the
// ruleset instead of being dropped.
func (k Knock) Pass() bool {
	if k.Door != nil {
		return k.Door.Pass
	}
	return k.Revoke.Pass
}

// Knocks returns the doors and revokes of p in source order: the order in
// which their state updates run on a packet to a shared port.
func Knocks(p *lang.Policy) []Knock {
	var ks []Knock
	for _, d := range p.Doors {
		if n := len(ks); n > 0 && ks[n-1].Door.Ref == d.Ref {
			ks[n-1].Doors = append(ks[n-1].Doors, d)
			continue
		}
		ks = append(ks, Knock{Door: d, Doors: []*lang.Door{d}})
	}
	m := len(ks)
	for _, r := range p.Revokes {
		if n := len(ks); n > m && ks[n-1].Revoke.Ref == r.Ref {
			ks[n-1].Revokes = append(ks[n-1].Revokes, r)
			continue
		}
		ks = append(ks, Knock{Revoke: r, Revokes: []*lang.Revoke{r}})
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].Ref().ID < ks[j].Ref().ID })
	return ks
}

// DoorsOf returns the doors that open s, in policy order.
func (ids *IDs) DoorsOf(s *lang.Service) []*lang.Door { return ids.doors[s] }

// LimitsOf returns the limits of s, in policy order.
func (ids *IDs) LimitsOf(s *lang.Service) []*lang.Limit { return ids.limits[s] }

// AllowsOf returns the allows of s, in policy order.
func (ids *IDs) AllowsOf(s *lang.Service) []*lang.Allow { return ids.allows[s] }

// HasProto reports whether some port of the service is of protocol p.
func HasProto(s *lang.Service, p lang.Proto) bool {
	for _, sp := range s.Ports {
		if sp.Proto == p {
			return true
		}
	}
	return false
}

// AnyOnce reports whether any of the doors is single-use.
func AnyOnce(doors []*lang.Door) bool {
	for _, d := range doors {
		if d.Once {
			return true
		}
	}
	return false
}

// ByProto groups ports by protocol, TCP first, keeping their order and
// dropping repeats.
func ByProto(ports []lang.Port) []ProtoPorts {
	var out []ProtoPorts
	idx := map[lang.Proto]int{}
	seen := map[lang.Port]bool{}
	for _, p := range ports {
		if seen[p] {
			continue
		}
		seen[p] = true
		i, ok := idx[p.Proto]
		if !ok {
			i = len(out)
			idx[p.Proto] = i
			out = append(out, ProtoPorts{Proto: p.Proto})
		}
		out[i].Ports = append(out[i].Ports, p.Num)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Proto < out[j].Proto })
	return out
}

// Kept returns the stages of an attempt at the sequence seq (stage k:
// the source has knocked its first k ports, 1 <= k < len(seq)) at which
// a knock on p neither restarts nor resets the attempt: those whose next
// knock is p, which it advances, and those whose last counted knock is
// p, of which it is taken for a retransmission. Ascending. A port that
// comes back later in the sequence has a stage of each kind for each
// of its places.
func Kept(seq []lang.Port, p lang.Port) []int {
	var ks []int
	for k := 1; k < len(seq); k++ {
		if seq[k] == p || seq[k-1] == p {
			ks = append(ks, k)
		}
	}
	return ks
}

// KnockPorts returns every port that a knock or close statement of p
// knocks on, grouped by protocol: the knocks that start an exclusive
// sequence over (lang.ResetKnocks).
func KnockPorts(p *lang.Policy) []ProtoPorts {
	var ports []lang.Port
	for _, d := range p.Doors {
		ports = append(ports, d.Sequence...)
	}
	for _, r := range p.Revokes {
		ports = append(append(ports, r.Ports...), r.Sequence...)
	}
	return ByProto(ports)
}

// ProtoPorts is a protocol and port numbers.
type ProtoPorts struct {
	Proto lang.Proto
	Ports []uint16
}

// LogPrefix returns the log prefix of a statement: the policy's, or
// "kwl KIND SERVICE: ".
func LogPrefix(l *lang.Log, kind string, s *lang.Service) string {
	if l.Prefix != "" {
		return l.Prefix
	}
	name := s.Name
	if n := lang.MaxLogPrefix - len("kwl "+kind+" : "); len(name) > n {
		name = name[:n]
	}
	return "kwl " + kind + " " + name + ": "
}

// RevokeLog is the log of a close statement's ports: its own, or else
// that of the first door of its service that logs, since a door's log
// covers its closes as Shorewall's SSHKnock logs every knock port.
func (ids *IDs) RevokeLog(r *lang.Revoke) *lang.Log {
	if r.Log != nil {
		return r.Log
	}
	for _, d := range ids.DoorsOf(r.Service) {
		if d.Log != nil {
			return d.Log
		}
	}
	return nil
}

// LogRate returns a log's rate as a token bucket in whole lines per
// unit, the first of lang.LogRateUnits that gives a whole number (lang
// checks that one does), and its burst.
func LogRate(l *lang.Log) (rate uint64, unit time.Duration, burst int) {
	units := lang.LogRateUnits
	n, per := l.Rate, l.Per
	if n <= 0 || per <= 0 {
		n, per = lang.DefaultLogRate, lang.DefaultLogPer
	}
	for _, u := range units {
		if (time.Duration(n)*u)%per == 0 {
			return uint64(time.Duration(n) * u / per), u, n
		}
	}
	u := units[len(units)-1]
	return uint64(time.Duration(n) * u / per), u, n
}

// Dur prints a duration exactly as the language writes it: 1h30m, 60s
// is 1m, 1.5s, 500ms (lang.FormatDuration).
func Dur(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return lang.FormatDuration(d)
}
