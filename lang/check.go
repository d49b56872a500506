package lang

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// builtinServices are the well-known names, as in /etc/services.
var builtinServices = map[string][]Port{
	"ssh":        {{TCP, 22}},
	"ftp":        {{TCP, 21}},
	"telnet":     {{TCP, 23}},
	"smtp":       {{TCP, 25}},
	"dns":        {{UDP, 53}, {TCP, 53}},
	"http":       {{TCP, 80}},
	"pop3":       {{TCP, 110}},
	"ntp":        {{UDP, 123}},
	"imap":       {{TCP, 143}},
	"snmp":       {{UDP, 161}},
	"https":      {{TCP, 443}},
	"submission": {{TCP, 587}},
	"imaps":      {{TCP, 993}},
	"pop3s":      {{TCP, 995}},
	"openvpn":    {{UDP, 1194}},
	"mysql":      {{TCP, 3306}},
	"rdp":        {{TCP, 3389}},
	"postgres":   {{TCP, 5432}},
	"vnc":        {{TCP, 5900}},
	"wireguard":  {{UDP, 51820}},
}

// BuiltinName returns the built-in service whose one port is p, if any
// (the first by name when several are).
func BuiltinName(p Port) (string, bool) {
	var names []string
	for name, ports := range builtinServices {
		if len(ports) == 1 && ports[0] == p {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", false
	}
	return slices.Min(names), true
}

// BuiltinService returns the ports of a built-in service name.
func BuiltinService(name string) ([]Port, bool) {
	p, ok := builtinServices[name]
	return append([]Port(nil), p...), ok
}

var logLevels = []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"}

// defaultWithin is the window between knocks of a sequence written
// without "within".
const defaultWithin = 5 * time.Second

// maxDuration bounds durations: the kernels count timeouts in 32-bit
// seconds or milliseconds, and no door needs to stay open for a year.
const maxDuration = 365 * 24 * time.Hour

// MaxLimitCount is the largest count of a limit. A limit admits at most
// Count connections in any window, and both backends keep one record per
// admitted connection and key that a new connection may have to look at
// (nft: one slot set per count; xt_recent: a ring of stamps, whose size
// kernels before 6.11 cap at 255).
const MaxLimitCount = 100

// MaxConcurrent is the largest count of a cap of concurrent connections
// ("limit ssh 10 concurrent"): the count is one number in the kernel
// (nft_connlimit, xt_connlimit), not one slot per connection.
const MaxConcurrent = 65535

// MaxLimitWindow is the longest window of a limit. An nft limit slot
// holds one token, refilled after a week, which must come only after
// the slot's element has expired.
const MaxLimitWindow = 24 * time.Hour

// Load parses and checks a policy file.
func Load(filename string, src []byte) (*Policy, Diagnostics) {
	f, diags := Parse(filename, src)
	p, cd := Check(f)
	diags = append(diags, cd...)
	diags.Sort()
	return p, diags
}

// Check type-checks a parsed file and builds its IR. It reports every
// problem it finds, not only the first. The policy is returned even when
// there are errors (with the statements in error left out), so callers
// can go on reporting; do not compile it unless HasErrors is false.
func Check(f *File) (*Policy, Diagnostics) {
	c := &checker{
		file:    f,
		pol:     &Policy{File: f.Name},
		defined: map[string]*Service{},
		used:    map[*Service]bool{},
		ast:     newAstOf(),
	}
	c.run()
	c.pol.Ignores = collectIgnores(f, &c.diags)
	c.diags = c.pol.Filter(c.diags)
	c.diags.Sort()
	return c.pol, c.diags
}

type checker struct {
	file    *File
	pol     *Policy
	diags   Diagnostics
	defined map[string]*Service // by service statements
	builtin map[string]*Service // built-ins, made on first use
	used    map[*Service]bool
	// knockPorts remembers every knock and close port with its statement,
	// for the checks that need the whole policy.
	knockPorts []knockPort
	// ast maps IR elements back to the statements they came from, for
	// the lints' positions and for what the IR does not keep.
	ast astOf
	// id numbers the statements in source order, from 1: their IR's ID.
	id map[Stmt]int
	// tokenSteps are the steps that send a token, whose secret knock
	// crossChecks finds.
	tokenSteps []tokenStep
}

type knockPort struct {
	port    Port
	pos     Pos
	service *Service
	kind    string // "knock" or "close"
	pass    bool   // the knocks go on: the port is meant to be in use
	secret  bool   // a secret knock's port
}

// tokenStep is a test step that sends a token, with where "token" is.
type tokenStep struct {
	step *Step
	pos  Pos
}

func (c *checker) errorf(pos Pos, code Code, hint, format string, args ...any) {
	c.diags.Add(pos, Error, code, fmt.Sprintf(format, args...), hint)
}

func (c *checker) warnf(pos Pos, code Code, hint, format string, args ...any) {
	c.diags.Add(pos, Warning, code, fmt.Sprintf(format, args...), hint)
}

func (c *checker) run() {
	c.id = map[Stmt]int{}
	for _, it := range c.file.Items {
		if it.Stmt != nil {
			c.id[it.Stmt] = len(c.id) + 1
		}
	}
	// Definitions first: a statement may name a service defined below it.
	for _, it := range c.file.Items {
		if s, ok := it.Stmt.(*ServiceStmt); ok {
			c.serviceStmt(s)
		}
	}
	for _, it := range c.file.Items {
		switch s := it.Stmt.(type) {
		case *KnockStmt:
			c.knockStmt(s)
		case *CloseStmt:
			c.closeStmt(s)
		case *LimitStmt:
			c.limitStmt(s)
		case *AllowStmt:
			c.allowStmt(s)
		case *TestStmt:
			c.testStmt(s)
		}
	}
	c.crossChecks()
	c.lint()
}

func (c *checker) serviceStmt(s *ServiceStmt) {
	pos := s.Position()
	if prev, ok := c.defined[s.Name]; ok {
		c.errorf(pos, ErrServiceTwice, fmt.Sprintf("the first definition is at line %d", prev.Pos.Line),
			"service %q is defined twice", s.Name)
		return
	}
	if len(s.Name) > MaxNameLen {
		c.errorf(pos, ErrNameLength, "name it in fewer words: a name becomes part of set, chain and list names, and of rule comments",
			"service name of %d characters is longer than %d", len(s.Name), MaxNameLen)
	}
	svc := &Service{Ref: Ref{c.id[s], pos}, Name: s.Name}
	svc.Ports = c.portList(s.Ports, "service", false)
	if s.Forward != nil {
		if a, ok := c.addr(s.Forward, "the forward address"); ok {
			if a.IsLoopback() || a.IsUnspecified() || a.Is4In6() && (a.Unmap().IsLoopback() || a.Unmap().IsUnspecified()) {
				what := "a loopback address: the kernel routes no packet from the network to loopback"
				if a.IsUnspecified() || a.Unmap().IsUnspecified() {
					what = "the unspecified address, which names no host"
				}
				c.errorf(s.Forward.Position(), ErrForwardLocal,
					"forward to the internal host's address, such as 192.168.1.5; to serve "+s.Name+" on this host, drop \"forward to\"",
					"service %s is forwarded to %s, %s", s.Name, a, what)
			} else {
				svc.Forward = a
			}
		}
		c.ast.services[svc] = s
	}
	c.defined[s.Name] = svc
}

// service resolves a name used by a statement.
func (c *checker) service(name string, pos Pos) *Service {
	svc := c.defined[name]
	if svc == nil {
		if ports, ok := builtinServices[name]; ok {
			if c.builtin == nil {
				c.builtin = map[string]*Service{}
			}
			svc = c.builtin[name]
			if svc == nil {
				svc = &Service{Ref: Ref{Pos: pos}, Name: name, Ports: append([]Port(nil), ports...)}
				c.builtin[name] = svc
			}
		}
	}
	if svc == nil {
		names := make([]string, 0, len(builtinServices)+len(c.defined))
		for n := range builtinServices {
			names = append(names, n)
		}
		for n := range c.defined {
			names = append(names, n)
		}
		sort.Strings(names)
		hint := didYouMean(name, names)
		if hint == "" {
			hint = fmt.Sprintf("define it first: service %s = tcp/PORT", name)
		}
		c.errorf(pos, ErrUnknownService, hint, "unknown service %q", name)
		return nil
	}
	if !c.used[svc] {
		c.used[svc] = true
		c.pol.Services = append(c.pol.Services, svc)
	}
	return svc
}

// port checks one PORTSPEC.
func (c *checker) port(ps *PortSpec) (Port, bool) {
	p := Port{Proto: TCP}
	if ps.Proto == "udp" {
		p.Proto = UDP
	}
	n, err := strconv.Atoi(ps.Num)
	if err != nil || n < 1 || n > 65535 {
		c.errorf(ps.Position(), ErrPortRange, "ports run from 1 to 65535", "port %s is out of range", ps.Num)
		return p, false
	}
	p.Num = uint16(n)
	return p, true
}

// portList checks a list of ports; what names the list in messages.
// Repeats are errors in sequences and in lists alike: a repeated knock
// can never advance a sequence, and a repeat in a list is a slip.
func (c *checker) portList(list []*PortSpec, what string, seq bool) []Port {
	var out []Port
	seen := map[Port]bool{}
	for _, ps := range list {
		p, ok := c.port(ps)
		if !ok {
			continue
		}
		// A sequence may come back to a port, but not knock it twice in
		// a row: the second knock would be a retransmission of the first.
		if seq && len(out) > 0 && out[len(out)-1] == p {
			c.errorf(ps.Position(), ErrRepeatedPort, "knock another port in between: a knock right after one on the same port is taken for its retransmission",
				"port %s is repeated in this %s", p, what)
			continue
		}
		if seen[p] && !seq {
			c.errorf(ps.Position(), ErrRepeatedPort, "a port may appear once in a "+what,
				"port %s is repeated in this %s", p, what)
			continue
		}
		seen[p] = true
		out = append(out, p)
	}
	return out
}

// duration checks a duration word; zeroOK allows "0s" (test times).
func (c *checker) duration(word string, pos Pos, what string, zeroOK bool) (time.Duration, bool) {
	d, _, err := parseDuration(word)
	switch {
	case err == errDurFine:
		c.errorf(pos, ErrDuration, "durations count whole nanoseconds: at most nine decimals of a second",
			"%s %s is finer than a nanosecond", what, word)
		return 0, false
	case err != nil || d > maxDuration:
		c.errorf(pos, ErrDuration, "durations stay under a year (8760h)", "%s %s is too long", what, word)
		return 0, false
	}
	if d < 0 || d == 0 && !zeroOK {
		c.errorf(pos, ErrDuration, "", "%s must be positive, not %s", what, word)
		return 0, false
	}
	return d, true
}

// prefix checks a SRC: an address or a CIDR with no host bits.
func (c *checker) prefix(s *Source) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(s.Addr)
	if err != nil || a.Zone() != "" {
		c.errorf(s.Position(), ErrAddress, "write an IPv4 or IPv6 address, or a CIDR such as 192.168.0.0/16",
			"%q is not an IP address", s.Addr)
		return netip.Prefix{}, false
	}
	if s.Bits == "" {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	bits, err := strconv.Atoi(s.Bits)
	if err != nil || bits < 0 || bits > a.BitLen() {
		c.errorf(s.Position(), ErrAddress, fmt.Sprintf("an IPv%s prefix length runs from 0 to %d", map[bool]string{true: "4", false: "6"}[a.Is4()], a.BitLen()),
			"%s/%s is not a valid CIDR", s.Addr, s.Bits)
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(a, bits)
	if p.Masked() != p {
		c.errorf(s.Position(), ErrHostBits, fmt.Sprintf("did you mean %s?", p.Masked()),
			"%s has bits set after the prefix length", p)
		return netip.Prefix{}, false
	}
	return p, true
}

// addr checks a SRC that must be one address.
func (c *checker) addr(s *Source, what string) (netip.Addr, bool) {
	p, ok := c.prefix(s)
	if !ok {
		return netip.Addr{}, false
	}
	if s.Bits != "" {
		c.errorf(s.Position(), ErrAddress, "write one address, without /"+s.Bits,
			"%s must be one address, not a network", what)
		return netip.Addr{}, false
	}
	return p.Addr(), true
}

// sources checks a from list. An IPv4-mapped address (::ffff:10.0.0.1)
// is refused: no IPv6 packet comes from one, and an IPv4 packet's source
// is written as IPv4, so the statement would compile to nothing.
func (c *checker) sources(list []*Source) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		p, ok := c.prefix(s)
		if !ok {
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			v4 := netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			want := v4.String()
			if v4.IsSingleIP() {
				want = v4.Addr().String()
			}
			c.errorf(s.Position(), ErrMappedSource, "write the IPv4 address: "+want,
				"%s is an IPv4-mapped IPv6 address: no packet comes from it, so the statement matches nothing", sourceText(s))
			continue
		}
		out = append(out, p)
	}
	return out
}

// family resolves the family clause and narrows it to the family of the
// sources when they are all of one family: "allow ssh from 10.0.0.0/8"
// concerns IPv4 only, and backends need not emit an IPv6 rule for it.
func (c *checker) family(o Options, from []netip.Prefix, pos Pos, fromNodes []*Source) Family {
	f := Both
	switch o.Family.String() {
	case "ipv4":
		f = IPv4
	case "ipv6":
		f = IPv6
	}
	v4, v6 := 0, 0
	for i, p := range from {
		if p.Addr().Is4() {
			v4++
		} else {
			v6++
		}
		if !f.Has(p.Addr()) {
			at := pos
			if i < len(fromNodes) {
				at = fromNodes[i].Position()
			}
			c.errorf(at, ErrFamily, "drop the address or the family clause",
				"%s can never match: the statement is restricted to %s", p, o.Family.Text)
		}
	}
	if f == Both && len(from) > 0 {
		switch {
		case v6 == 0:
			f = IPv4
		case v4 == 0:
			f = IPv6
		}
	}
	return f
}

func (c *checker) log(l *LogOpt) *Log {
	if l == nil {
		return nil
	}
	level := l.Level.Text
	out := &Log{Level: level, Rate: DefaultLogRate, Per: DefaultLogPer}
	if !slices.Contains(logLevels, level) {
		hint := didYouMean(level, logLevels)
		if level == "warning" || level == "error" || level == "emergency" || level == "critical" {
			hint = "did you mean '" + map[string]string{"warning": "warn", "error": "err", "emergency": "emerg", "critical": "crit"}[level] + "'?"
		}
		if hint == "" {
			hint = "levels are " + strings.Join(logLevels, ", ")
		}
		c.errorf(l.Level.Pos, ErrLogLevel, hint, "unknown log level %q", level)
	}
	if l.Prefix != nil {
		s, err := strconv.Unquote(l.Prefix.Text)
		if err != nil {
			c.errorf(l.Position(), ErrString, `escape only \" and \\ in strings`, "log prefix %s is not a valid string", l.Prefix.Text)
		}
		out.Prefix = s
		c.logPrefix(s, l.Prefix.Pos)
	}
	if l.Count != nil {
		c.logRate(l, out)
	}
	return out
}

// logPrefix checks that a log prefix reaches the log as written on every
// backend: iptables' LOG target cuts it after MaxLogPrefix characters,
// nft writes a double quote as a single one, and a control character
// (a NUL above all) would end or break the ruleset's line.
func (c *checker) logPrefix(s string, pos Pos) {
	if len(s) > MaxLogPrefix {
		c.errorf(pos, ErrLogPrefix, fmt.Sprintf("iptables' LOG target keeps %d characters; shorten it to %q", MaxLogPrefix, s[:MaxLogPrefix]),
			"log prefix of %d characters is longer than %d", len(s), MaxLogPrefix)
		return
	}
	for _, r := range s {
		if r < ' ' || r > '~' || r == '"' || r == '\\' {
			c.errorf(pos, ErrLogPrefix, "a prefix holds printable ASCII characters other than \" and \\",
				"log prefix %q holds %q, which a backend would drop or change", s, r)
			return
		}
	}
}

// logRate checks "rate N/DUR" of a log clause: N lines per DUR, a rate
// both backends' token buckets count in whole lines per second, minute,
// hour or day.
func (c *checker) logRate(l *LogOpt, out *Log) {
	n, err := strconv.Atoi(l.Count.Text)
	if err != nil || n < 1 || n > maxLogRate {
		c.errorf(l.Count.Pos, ErrLogRate, fmt.Sprintf("log at least 1 and at most %d lines per window", maxLogRate), "log rate %s is out of range", l.Count.Text)
		return
	}
	per, ok := c.duration(l.Per.Text, l.Per.Pos, "the log rate's window", false)
	if !ok {
		return
	}
	if per > 24*time.Hour {
		c.errorf(l.Per.Pos, ErrLogRate, "write the rate over a day or less: 1/1d is 1/24h", "the log rate's window %s is longer than a day", l.Per.Text)
		return
	}
	for _, u := range LogRateUnits {
		if (time.Duration(n)*u)%per == 0 {
			out.Rate, out.Per = n, per
			return
		}
	}
	c.errorf(l.Count.Pos, ErrLogRate, "the kernels count a log rate in whole lines per second, minute, hour or day: write it as such (3/1m, 1/20s)",
		"log rate %s/%s is not a whole number of lines per second, minute, hour or day", l.Count.Text, l.Per.Text)
}

// maxLogRate is the largest count of a log rate (xt_limit's burst is at
// most 10000).
const maxLogRate = 10000

func (c *checker) knockStmt(s *KnockStmt) {
	pos := s.Position()
	n := len(c.diags)
	svcs := []*Service{c.service(s.Service.Text, s.Service.Pos)}
	for _, w := range s.Also {
		sv := c.service(w.Text, w.Pos)
		if sv != nil && slices.Contains(svcs, sv) {
			c.errorf(w.Pos, ErrNamedTwice, "name each service once", "%s is named twice", w.Text)
		}
		svcs = append(svcs, sv)
	}
	seq := c.portList(s.Ports, "sequence", true)
	from := c.sources(s.From)
	fam := c.family(s.Options, from, pos, s.From)
	lg := c.log(s.Log)
	if s.Action == "closes" {
		c.noReject(s.Options, "a closing knock drops its knocks, which must not answer")
	}
	var within, span time.Duration
	if s.In != nil {
		span, _ = c.duration(s.In.Text, s.In.Pos, "the window of the sequence", false)
		if len(s.Ports) == 1 {
			c.errorf(s.In.Pos, ErrSpan, "drop \"in "+s.In.Text+"\", or knock more than one port",
				"a single knock has no sequence to complete in %s", s.In.Text)
		}
	}
	switch {
	case s.Within != nil:
		within, _ = c.duration(s.Within.Text, s.Within.Pos, "the window between knocks", false)
	case span > 0:
		// The whole sequence's window bounds every gap in it.
		within = span
	case len(s.Ports) > 1:
		within = defaultWithin
	}
	if len(s.Ports) == 1 {
		within = 0
	}
	var life time.Duration
	switch {
	case s.Action == "opens" && s.For == nil:
		c.errorf(s.Service.Pos, ErrLifetime, fmt.Sprintf("say how long the door stays open: knock ... opens %s for 60s", s.Service.Text),
			"knock opens %s but does not say for how long", s.Service.Text)
	case s.Action == "opens":
		life, _ = c.duration(s.For.Text, s.For.Pos, "the door's lifetime", false)
	case s.For != nil:
		c.errorf(s.ForPos, ErrLifetime, "drop \"for "+s.For.Text+"\"", "a closing knock takes no lifetime")
	}
	reset := ResetOwn
	if s.Reset != nil {
		reset = ResetAny
		if s.Reset.Text == "exclusive" {
			reset = ResetKnocks
		}
		if len(s.Ports) == 1 {
			c.errorf(s.Reset.Pos, ErrResetOne, "drop \""+s.Reset.Text+"\", or knock more than one port",
				"a single knock has no attempt in progress to start over")
		}
	}
	var ignore time.Duration
	if s.Ignore != nil {
		ignore, _ = c.duration(s.Ignore.Text, s.Ignore.Pos, "the time a source is ignored", false)
		switch {
		case s.Action == "closes":
			c.errorf(s.IgnorePos, ErrIgnore, "drop \"ignore "+s.Ignore.Text+"\": it belongs on a sequence that opens", "a closing knock ignores no source")
		case len(s.Ports) == 1:
			c.errorf(s.IgnorePos, ErrIgnore, "drop \"ignore "+s.Ignore.Text+"\", or knock more than one port",
				"a single knock is never out of order: nothing to ignore")
		}
	}
	mask4, mask6 := 32, 128
	if s.PerSource && s.Action == "closes" {
		c.errorf(s.PerPos, ErrPerClose, "drop \"per source\": a close closes each door of the service by the door's own key",
			"a closing knock opens no door to key by source prefix")
	}
	if s.Mask4 != nil {
		mask4 = c.mask(s.Mask4, 32, "IPv4")
	}
	if s.Mask6 != nil {
		mask6 = c.mask(s.Mask6, 128, "IPv6")
	}
	if s.Action == "closes" && s.Once != nil {
		c.errorf(s.Once.Pos, ErrOnce, "drop \"once\": it belongs on a knock that opens", "a closing knock opens no door to use once")
	}
	var sec *Secret
	if s.Secret != nil {
		sec = c.secretKnock(s)
	}
	if slices.Contains(svcs, nil) {
		return
	}
	for _, svc := range svcs {
		for i, p := range seq {
			c.knockPorts = append(c.knockPorts, knockPort{port: p, pos: s.Ports[min(i, len(s.Ports)-1)].Position(), service: svc, kind: "knock",
				pass: s.Pass != nil, secret: s.Secret != nil})
		}
	}
	if len(c.diags) > n && c.diags[n:].HasErrors() {
		return
	}
	if s.Action == "opens" && s.Once != nil {
		for _, svc := range svcs {
			if slices.ContainsFunc(svc.Ports, func(p Port) bool { return p.Proto == UDP }) {
				c.errorf(s.Once.Pos, ErrOnceUDP, fmt.Sprintf("drop \"once\", or give it a service of TCP ports only (%s has UDP ports)", svc.Name),
					"a single-use door cannot guard UDP: a flow's datagrams are new to conntrack until the server answers, so the second one would find the door used up")
				return
			}
		}
	}
	// A statement of several services is a door (or a revoke) of each,
	// in the order named, all with the statement's Ref: one sequence
	// opens (or closes) them all.
	for _, svc := range svcs {
		if s.Action == "opens" {
			svc.Guarded = true
			d := &Door{Ref: Ref{c.id[s], pos}, Service: svc, Sequence: seq, Within: within, Span: span,
				Lifetime: life, Once: s.Once != nil, Mask4: mask4, Mask6: mask6, Pass: s.Pass != nil, Ignore: ignore, Reset: reset, From: from, Family: fam,
				Secret: sec, Reject: s.Reject != nil, Log: lg}
			c.pol.Doors = append(c.pol.Doors, d)
			c.ast.doors[d] = s
			continue
		}
		r := &Revoke{Ref: Ref{c.id[s], pos}, Service: svc, Pass: s.Pass != nil, From: from, Family: fam, Log: lg}
		c.ast.revokes[r] = s.Ports
		if len(seq) == 1 {
			r.Ports = seq
		} else {
			r.Sequence, r.Within, r.Span, r.Reset = seq, within, span, reset
		}
		c.pol.Revokes = append(c.pol.Revokes, r)
	}
}

// secretKnock checks what a secret knock may be: one UDP port, opening,
// none of the clauses of a sequence or of a knock that goes on, and the
// absolute name of a file. It reads no file.
func (c *checker) secretKnock(s *KnockStmt) *Secret {
	n := len(c.diags)
	const one = "a secret knock is one datagram"
	switch {
	case s.Action == "closes":
		c.errorf(s.SecretPos, ErrSecret, "drop the secret: a close needs none, since closing a door gives no one access",
			"a closing knock takes no secret")
	case len(s.Ports) > 1:
		c.errorf(s.Ports[1].Position(), ErrSecret, "knock one UDP port: the token, not the ports, is the secret", "%s, not a sequence", one)
	case s.Ports[0].Proto != "udp":
		c.errorf(s.Ports[0].Position(), ErrSecret, "write udp/"+s.Ports[0].Num, "%s: its port is a UDP port", one)
	}
	for _, w := range []*Word{s.Within, s.Reset} {
		if w != nil {
			c.errorf(w.Pos, ErrSecret, "drop \""+w.Text+"\"", "%s: there is no sequence for %q to bound or reset", one, w.Text)
		}
	}
	if s.Pass != nil {
		c.errorf(s.Pass.Pos, ErrSecret, "drop \"pass\"", "a secret knock's datagram is used up, not passed on")
	}
	name, err := strconv.Unquote(s.Secret.Text)
	switch {
	case err != nil:
		c.errorf(s.Secret.Pos, ErrString, `escape only \" and \\ in strings`, "secret file %s is not a valid string", s.Secret.Text)
	case !path.IsAbs(name):
		c.errorf(s.Secret.Pos, ErrSecret, "name the file from the root, such as \"/etc/kwl/ssh.key\": deploy and kwl knock run from anywhere",
			"secret file %s is not an absolute path", s.Secret.Text)
	}
	if len(c.diags) > n {
		return nil
	}
	return &Secret{Pos: s.Secret.Pos, Path: name}
}

func (c *checker) closeStmt(s *CloseStmt) {
	pos := s.Position()
	n := len(c.diags)
	svc := c.service(s.Service.Text, s.Service.Pos)
	ports := c.portList(s.Ports, "list", false)
	from := c.sources(s.From)
	fam := c.family(s.Options, from, pos, s.From)
	lg := c.log(s.Log)
	c.noReject(s.Options, "a close drops its knocks, which must not answer")
	if svc == nil {
		return
	}
	for i, p := range ports {
		c.knockPorts = append(c.knockPorts, knockPort{port: p, pos: s.Ports[min(i, len(s.Ports)-1)].Position(), service: svc, kind: "close"})
	}
	if c.diags[n:].HasErrors() {
		return
	}
	r := &Revoke{Ref: Ref{c.id[s], pos}, Service: svc, Ports: ports, From: from, Family: fam, Log: lg}
	c.pol.Revokes = append(c.pol.Revokes, r)
	c.ast.revokes[r] = s.Ports
}

func (c *checker) limitStmt(s *LimitStmt) {
	pos := s.Position()
	n := len(c.diags)
	svc := c.service(s.Service.Text, s.Service.Pos)
	l := &Limit{Ref: Ref{c.id[s], pos}, Service: svc, PerSource: s.PerSource, Mask4: 32, Mask6: 128}
	count, err := strconv.Atoi(s.Count.Text)
	l.Concurrent = s.Concurrent != nil
	if s.Burst != nil {
		// A token bucket's burst means one thing on nft (rate + burst
		// tokens, refilled by the nanosecond) and another on iptables
		// (burst credits, refilled by the jiffy); a limit is a sliding
		// window, which admits its whole count at once.
		hint := fmt.Sprintf("drop \"burst %s\"", s.Burst.Text)
		b, berr := strconv.Atoi(s.Burst.Text)
		n, nerr := strconv.Atoi(s.Count.Text)
		if s.Window != nil && berr == nil && nerr == nil && b > 0 && n > 0 {
			if w, _, err := parseDuration(s.Window.Text); err == nil && w > 0 {
				hint += fmt.Sprintf("; to admit %d at once at the same rate, write %d/%s", b, b, FormatDuration(w*time.Duration(b)/time.Duration(n)))
			}
		}
		what := "a cap has no burst: it counts open connections"
		if s.Window != nil {
			what = fmt.Sprintf("a limit has no burst: %s/%s admits up to %s at once, and at most %s in any %s",
				s.Count.Text, s.Window.Text, s.Count.Text, s.Count.Text, s.Window.Text)
		}
		c.errorf(s.BurstPos, ErrBurst, hint, "%s", what)
	}
	switch {
	case l.Concurrent && (err != nil || count > MaxConcurrent):
		c.errorf(s.Count.Pos, ErrLimitCount, fmt.Sprintf("a cap holds at most %d concurrent connections", MaxConcurrent),
			"limit count %s is too large", s.Count.Text)
	case !l.Concurrent && (err != nil || count > MaxLimitCount):
		c.errorf(s.Count.Pos, ErrLimitCount, fmt.Sprintf("a limit counts at most %d connections per window; for a higher rate, write it over a shorter window (100/1s rather than 6000/1m)", MaxLimitCount),
			"limit count %s is too large", s.Count.Text)
	case count < 1:
		c.errorf(s.Count.Pos, ErrLimitCount, "a limit admits at least 1 connection per window; to refuse all, guard the service with a knock",
			"limit count must be at least 1, not %s", s.Count.Text)
	}
	l.Count = count
	if s.Window != nil {
		l.Window, _ = c.duration(s.Window.Text, s.Window.Pos, "the limit's window", false)
	}
	if l.Window > MaxLimitWindow {
		c.errorf(s.Window.Pos, ErrDuration, "a limit's window is at most a day; write the rate over a shorter window",
			"the limit's window %s is longer than a day", s.Window.Text)
	}
	if s.Mask4 != nil {
		l.Mask4 = c.mask(s.Mask4, 32, "IPv4")
	}
	if s.Mask6 != nil {
		l.Mask6 = c.mask(s.Mask6, 128, "IPv6")
	}
	if s.Ban != nil {
		l.Ban, _ = c.duration(s.Ban.Text, s.Ban.Pos, "the ban", false)
		if !s.PerSource && !s.Shared {
			// One source that spends the shared counter would get every
			// source after it banned: say so, or say "shared".
			c.errorf(s.BanPos, ErrSharedBan,
				fmt.Sprintf("ban the sources that exceed their own count: limit %[1]s %[2]s per source ban %[3]s; or, to mean one counter for all, write limit %[1]s %[2]s shared ban %[3]s",
					s.Service.Text, countText(s), s.Ban.Text),
				"ban without per source: once one source spends the counter all sources share, every source that connects is banned")
		}
	}
	l.Family = c.family(s.Options, nil, pos, nil)
	l.Reject = s.Reject != nil
	l.BanAll = s.BanAll != nil
	if l.BanAll && l.Reject {
		// A reject answers what it refuses; on every port and protocol
		// of a banned source that would make the host answer a flood.
		c.errorf(s.Reject.Pos, ErrBanAllReject, "drop \"reject\", or ban from the service alone (drop \"all\")",
			"reject with a ban on all traffic: the host would answer every packet of a banned source, on every port")
	}
	l.Log = c.log(s.Log)
	if svc == nil || c.diags[n:].HasErrors() {
		return
	}
	c.pol.Limits = append(c.pol.Limits, l)
	c.ast.limits[l] = s
}

// countText writes a limit's count as the policy does: 3/60s, or 10
// concurrent.
func countText(s *LimitStmt) string {
	if s.Concurrent != nil {
		return s.Count.Text + " concurrent"
	}
	return s.Count.Text + "/" + s.Window.Text
}

// noReject reports a reject clause on a statement that refuses nothing
// (why says what it does instead).
func (c *checker) noReject(o Options, why string) {
	if o.Reject != nil {
		c.errorf(o.Reject.Pos, ErrReject, "drop \"reject\": it belongs on the knock that opens the service, or on a limit",
			"reject on a statement that refuses no connection: %s", why)
	}
}

// secretPorts holds a secret knock's port to itself: another knock or
// close of the port would be knocked without the token. It gives each
// token step its knock's secret.
func (c *checker) secretPorts() {
	secret := map[Port]Pos{}
	for _, k := range c.knockPorts {
		if k.secret {
			secret[k.port] = k.pos
		}
	}
	for _, k := range c.knockPorts {
		if at, ok := secret[k.port]; ok && at != k.pos {
			c.errorf(k.pos, ErrSecret, "give each its own port", "%s port %s is the port of the secret knock at line %d", k.kind, k.port, at.Line)
		}
	}
	// A token of one secret knock would open another of the same
	// secret: a datagram seen on its way to one port, sent to the other.
	files := map[string]Pos{}
	for _, d := range c.pol.Doors {
		if d.Secret == nil {
			continue
		}
		at, ok := files[path.Clean(d.Secret.Path)]
		switch {
		case !ok:
			files[path.Clean(d.Secret.Path)] = d.Pos
		case at != d.Pos:
			c.errorf(d.Secret.Pos, ErrSecret, "give each secret knock a secret file of its own",
				"the secret knock at line %d has the same secret: a token sent to one could be sent again to the other", at.Line)
		}
	}
	for _, ts := range c.tokenSteps {
		for _, d := range c.pol.Doors {
			if d.Secret != nil && d.Sequence[0] == ts.step.Port {
				ts.step.Secret = d.Secret
				break
			}
		}
		if ts.step.Secret == nil {
			c.errorf(ts.pos, ErrToken, "send it to the port of a knock with a secret", "no secret knock takes a token on %s", ts.step.Port)
		}
	}
}

// rejectDoors reports the doors of a service that do not refuse as its
// first door does: a service has one guard, which drops or rejects.
func (c *checker) rejectDoors() {
	first := map[*Service]*Door{}
	for _, d := range c.pol.Doors {
		f, ok := first[d.Service]
		if !ok {
			first[d.Service] = d
			continue
		}
		if f.Reject != d.Reject {
			say := map[bool]string{true: "rejects", false: "drops"}
			c.errorf(d.Pos, ErrRejectDoors, fmt.Sprintf("a service has one guard: write reject on every door of %s, or on none", d.Service.Name),
				"this door of %s %s connections while no door is open, the door at line %d %s them", d.Service.Name, say[d.Reject], f.Pos.Line, say[f.Reject])
		}
	}
}

func (c *checker) mask(w *Word, bits int, fam string) int {
	m, err := strconv.Atoi(w.Text)
	if err != nil || m < 1 || m > bits {
		c.errorf(w.Pos, ErrMask, fmt.Sprintf("an %s source prefix runs from 1 to %d", fam, bits),
			"per source/%s is out of range for %s", w.Text, fam)
		return bits
	}
	return m
}

func (c *checker) allowStmt(s *AllowStmt) {
	pos := s.Position()
	n := len(c.diags)
	svc := c.service(s.Service.Text, s.Service.Pos)
	from := c.sources(s.From)
	fam := c.family(s.Options, from, pos, s.From)
	lg := c.log(s.Log)
	c.noReject(s.Options, "an allow admits and never refuses")
	if svc == nil || c.diags[n:].HasErrors() {
		return
	}
	c.pol.Allows = append(c.pol.Allows, &Allow{Ref: Ref{c.id[s], pos}, Service: svc, From: from, Family: fam, Log: lg})
}

var verdicts = map[string]Verdict{"accept": Accept, "drop": Drop, "reject": Reject}

func (c *checker) testStmt(s *TestStmt) {
	pos := s.Position()
	name, err := strconv.Unquote(s.Name)
	if err != nil {
		c.errorf(pos, ErrString, `escape only \" and \\ in strings`, "test name %s is not a valid string", s.Name)
	}
	t := &Test{Ref: Ref{c.id[s], pos}, Name: name, Start: DefaultTestStart}
	if s.At != nil {
		at, err := time.Parse(time.RFC3339Nano, s.At.Text)
		if err != nil || !strings.HasSuffix(s.At.Text, "Z") {
			c.errorf(s.At.Pos, ErrTestStart, "write the time in UTC as RFC 3339 does: 2026-12-01T10:00:00Z",
				"test start %s is not a time in UTC", s.At.Text)
		} else {
			t.Start = at
		}
	}
	var last time.Duration
	var lastPos Pos
	for _, it := range s.Items {
		st := it.Step
		if st == nil {
			continue
		}
		sp := st.Position()
		if len(t.Steps) == MaxTestSteps {
			c.errorf(sp, ErrTestLength, "split the test into several: each starts from an empty state",
				"test %q has more than %d steps", name, MaxTestSteps)
			break
		}
		step := &Step{Pos: sp, Kind: New, Expect: verdicts[st.Expect]}
		if st.Data {
			step.Kind = Data
		}
		at, ok := c.duration(st.At.Text, st.At.Pos, "a step's time", true)
		if ok {
			if at < last {
				c.errorf(sp, ErrTestTime, fmt.Sprintf("the step at line %d is at %s; steps run in order and time never goes back", lastPos.Line, last),
					"step at %s comes before the previous step", st.At.Text)
			}
			last, lastPos = at, sp
		}
		step.At = at
		step.Src, _ = c.addr(st.From, "a step's source")
		if st.SPort != nil {
			n, err := strconv.Atoi(st.SPort.Text)
			if err != nil || n < 1 || n > 65535 {
				c.errorf(st.SPort.Pos, ErrPortRange, "ports run from 1 to 65535", "source port %s is out of range", st.SPort.Text)
			} else {
				step.SPort = uint16(n)
			}
		}
		if st.To != nil {
			step.Dst, _ = c.addr(st.To, "a step's destination")
			if step.Src.IsValid() && step.Dst.IsValid() && step.Src.Is4() != step.Dst.Is4() {
				c.errorf(st.To.Position(), ErrFamily, "", "a packet from %s cannot go to %s: the families differ", step.Src, step.Dst)
			}
		}
		step.Port, _ = c.port(st.Port)
		if st.Flags != nil {
			fp := st.Flags.Pos
			f, bad, ok := ParseTCPFlags(st.Flags.Text)
			switch {
			case !ok && strings.Contains(flagLetters, bad):
				c.errorf(fp, ErrFlags, "", "TCP flag %s is given twice in %q", bad, st.Flags.Text)
			case !ok:
				c.errorf(fp, ErrFlags, "flags are letters as tcpdump prints them: S (SYN), A (ACK), F (FIN), R (RST), P (PSH), U (URG), E (ECE), W (CWR), or none",
					"%q is not a TCP flag in %q", bad, st.Flags.Text)
			case step.Port.Proto == UDP:
				c.errorf(fp, ErrFlags, "drop the flags, or send to a TCP port", "a UDP datagram has no TCP flags")
			default:
				step.Flags, step.HasFlags = f, true
			}
		}
		if st.Token != nil {
			switch {
			case st.Data:
				c.errorf(st.Token.Pos, ErrToken, "drop \"data\": a token is a datagram of its own", "a token opens no flow to send data in")
			case step.Port.Proto != UDP:
				c.errorf(st.Token.Pos, ErrToken, "send it to the secret knock's UDP port", "a token is a UDP datagram, not %s", step.Port)
			default:
				step.Token = ValidToken
				switch st.TokenKind.String() {
				case "stale":
					step.Token = StaleToken
				case "forged":
					step.Token = ForgedToken
				}
				c.tokenSteps = append(c.tokenSteps, tokenStep{step, st.Token.Pos})
			}
		}
	overrides:
		for _, o := range st.Override {
			for i, prev := range step.ExpectOn {
				if prev.Backend == o.Backend {
					c.errorf(o.Position(), ErrOverride, "", "the verdict for %s is given twice", o.Backend)
					step.ExpectOn[i].Verdict = verdicts[o.Verdict]
					continue overrides
				}
			}
			step.ExpectOn = append(step.ExpectOn, BackendVerdict{Pos: o.Position(), Backend: o.Backend, Verdict: verdicts[o.Verdict]})
		}
		t.Steps = append(t.Steps, step)
	}
	c.pol.Tests = append(c.pol.Tests, t)
}

// crossChecks look at the whole policy: a knock port must not be a port
// of a service the policy opens, allows or limits (knockd issue 25: the
// knock would be taken by the service, or a client of the service would
// knock without meaning to).
func (c *checker) crossChecks() {
	c.rejectDoors()
	c.secretPorts()
	type owner struct {
		svc  *Service
		what string
	}
	ports := map[Port][]owner{}
	add := func(s *Service, what string) {
		for _, p := range s.Ports {
			for _, o := range ports[p] {
				if o.svc == s {
					return
				}
			}
			ports[p] = append(ports[p], owner{s, what})
		}
	}
	for _, d := range c.pol.Doors {
		add(d.Service, "guarded")
	}
	for _, a := range c.pol.Allows {
		add(a.Service, "allowed")
	}
	for _, l := range c.pol.Limits {
		add(l.Service, "limited")
	}
	for _, k := range c.knockPorts {
		n := len(c.diags)
		for _, p := range k.service.Ports {
			if p == k.port {
				c.errorf(k.pos, ErrKnockOnService, "pick a port nothing listens on, such as 1600",
					"%s port %s is a port of %s itself", k.kind, k.port, k.service.Name)
			}
		}
		for _, o := range ports[k.port] {
			if o.svc != k.service && !k.pass {
				c.warnf(k.pos, LintKnockOnOtherService, "pick a port no service uses",
					"%s port %s is also the port of %s service %s", k.kind, k.port, o.what, o.svc.Name)
			}
		}
		if len(c.diags) == n {
			c.wellKnownKnock(k)
		}
	}
}
