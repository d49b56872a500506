// Package irtest builds checked policies (lang.Policy) by hand for the
// backends' tests, so that lowering is tested on exactly the IR it is
// given, independently of the parser.
package irtest

import (
	"net/netip"
	"time"

	"kwl.dev/kwl/lang"
)

// B builds a policy statement by statement; each statement gets the next
// line of file "FILE".
type B struct {
	P    *lang.Policy
	line int
	svcs map[string]*lang.Service
}

// New starts a policy of the named file.
func New(file string) *B {
	return &B{P: &lang.Policy{File: file}, svcs: map[string]*lang.Service{}}
}

// ref returns the Ref of the next statement: one line each, the first
// on line 1, so that its ID is its line.
func (b *B) ref() lang.Ref {
	b.line++
	return lang.Ref{ID: b.line, Pos: lang.Pos{File: b.P.File, Line: b.line, Col: 1}}
}

// builtin ports of the services the tests use.
var builtin = map[string][]lang.Port{
	"ssh":   {TCP(22)},
	"https": {TCP(443)},
	"http":  {TCP(80)},
	"dns":   {UDP(53), TCP(53)},
}

// TCP is a TCP port.
func TCP(n uint16) lang.Port { return lang.Port{Proto: lang.TCP, Num: n} }

// UDP is a UDP port.
func UDP(n uint16) lang.Port { return lang.Port{Proto: lang.UDP, Num: n} }

// Svc returns the named service, a built-in one on first use.
func (b *B) Svc(name string) *lang.Service {
	if s, ok := b.svcs[name]; ok {
		return s
	}
	s := &lang.Service{Ref: lang.Ref{Pos: lang.Pos{File: b.P.File, Line: b.line + 1, Col: 1}}, Name: name, Ports: builtin[name]}
	b.svcs[name] = s
	b.P.Services = append(b.P.Services, s)
	return s
}

// Service defines a service (service NAME = PORTS [forward to ADDR]).
func (b *B) Service(name string, fwd string, ports ...lang.Port) *lang.Service {
	s := &lang.Service{Ref: b.ref(), Name: name, Ports: ports}
	if fwd != "" {
		s.Forward = netip.MustParseAddr(fwd)
	}
	b.svcs[name] = s
	b.P.Services = append(b.P.Services, s)
	return s
}

// Door adds a knock statement that opens svc.
func (b *B) Door(svc string, within, life time.Duration, ports ...lang.Port) *lang.Door {
	s := b.Svc(svc)
	s.Guarded = true
	d := &lang.Door{Ref: b.ref(), Service: s, Sequence: ports, Within: within, Lifetime: life}
	b.P.Doors = append(b.P.Doors, d)
	return d
}

// Close adds a close statement (any of ports revokes).
func (b *B) Close(svc string, ports ...lang.Port) *lang.Revoke {
	r := &lang.Revoke{Ref: b.ref(), Service: b.Svc(svc), Ports: ports}
	b.P.Revokes = append(b.P.Revokes, r)
	return r
}

// CloseSeq adds a closing knock sequence.
func (b *B) CloseSeq(svc string, within time.Duration, ports ...lang.Port) *lang.Revoke {
	r := &lang.Revoke{Ref: b.ref(), Service: b.Svc(svc), Sequence: ports, Within: within}
	b.P.Revokes = append(b.P.Revokes, r)
	return r
}

// Limit adds a limit statement; per source when mask4 > 0.
func (b *B) Limit(svc string, count int, window time.Duration, mask4, mask6 int, ban time.Duration) *lang.Limit {
	l := &lang.Limit{Ref: b.ref(), Service: b.Svc(svc), Count: count, Window: window,
		PerSource: mask4 > 0, Mask4: mask4, Mask6: mask6, Ban: ban}
	if mask4 == 0 {
		l.Mask4, l.Mask6 = 32, 128
	}
	b.P.Limits = append(b.P.Limits, l)
	return l
}

// Allow adds an allow statement.
func (b *B) Allow(svc string, from ...string) *lang.Allow {
	a := &lang.Allow{Ref: b.ref(), Service: b.Svc(svc), From: Prefixes(from...)}
	b.P.Allows = append(b.P.Allows, a)
	return a
}

// Prefixes parses addresses and prefixes.
func Prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p)
			continue
		}
		a := netip.MustParseAddr(s)
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	return ps
}

// Policies are the SPEC's examples (and the kernel catalog's edge cases)
// as hand-built IR, by name.
func Policies() map[string]*lang.Policy {
	m := map[string]*lang.Policy{}

	b := New("oneliner.kwl")
	b.Door("ssh", 0, 60*time.Second, TCP(1600))
	b.Limit("ssh", 3, 60*time.Second, 32, 128, 0)
	m["oneliner"] = b.P

	b = New("sshknock.kwl")
	b.Svc("ssh")
	d := b.Door("ssh", 0, 60*time.Second, TCP(1600))
	d.Log = &lang.Log{Level: "info"}
	b.Close("ssh", TCP(1599), TCP(1601))
	l := b.Limit("ssh", 3, 60*time.Second, 32, 128, 0)
	l.Log = &lang.Log{Level: "info"}
	m["sshknock"] = b.P

	b = New("sequence.kwl")
	b.Door("ssh", 5*time.Second, 30*time.Second, TCP(7000), UDP(8000), TCP(9000))
	b.CloseSeq("ssh", 5*time.Second, TCP(9000), TCP(8000), TCP(7000))
	m["sequence"] = b.P

	b = New("forward.kwl")
	b.Service("inside-ssh", "192.168.1.5", TCP(22))
	b.Door("inside-ssh", 0, 60*time.Second, TCP(1600))
	m["forward"] = b.P

	b = New("sources.kwl")
	b.Allow("ssh", "192.168.0.0/16", "fd00::/8")
	d = b.Door("ssh", 0, 60*time.Second, TCP(1600))
	d.From = Prefixes("203.0.113.0/24")
	b.Limit("https", 100, time.Second, 0, 0, 0).Family = lang.IPv4
	b.Limit("https", 100, time.Second, 0, 0, 0).Family = lang.IPv6
	b.Limit("ssh", 3, 60*time.Second, 24, 64, 0)
	b.Limit("ssh", 5, 60*time.Second, 32, 128, 300*time.Second)
	m["sources"] = b.P

	b = New("family.kwl")
	d = b.Door("ssh", 0, 2*time.Second, TCP(1600))
	d.Family = lang.IPv4
	l = b.Limit("https", 1, 2*time.Second, 32, 128, 0)
	l.Family = lang.IPv6
	m["family"] = b.P

	b = New("globalban.kwl")
	b.Limit("https", 3, 20*time.Second, 0, 0, 10*time.Second).Family = lang.IPv4
	m["globalban"] = b.P

	b = New("sharedport.kwl")
	b.Door("ssh", time.Second, 3*time.Second, TCP(7000), TCP(8000))
	b.CloseSeq("ssh", time.Second, TCP(9000), TCP(7000))
	b.Door("ssh", 0, 10*time.Second, TCP(1600))
	b.Service("game", "", UDP(27015))
	b.Door("game", time.Second, time.Second, UDP(4444), TCP(5555))
	m["sharedport"] = b.P
	return m
}
