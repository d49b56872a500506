package lang

import (
	"net/netip"
	"strings"
	"time"
)

// This file holds the IR: what a checked policy means, independent of any
// backend. Check builds it from the AST; compile/nft and compile/iptables
// lower it into rulesets. Names are resolved, durations are time.Duration,
// addresses are netip values. Every statement has a Ref: its ID, its
// number among the file's statements in source order (1 for the first),
// which orders and identifies it, and its Pos for messages. The rules a
// backend makes from a statement keep its Ref, so that the simulator can
// say which statement decided a packet.

// A Ref names a statement of a policy: its ID, its number in source
// order from 1, and its position. It is what the rules and sets made
// from a statement keep of it. The zero Ref names no statement: it is the
// origin of the rules a ruleset needs whatever the policy says.
type Ref struct {
	ID  int
	Pos Pos
}

// IsZero reports whether r names no statement.
func (r Ref) IsZero() bool { return r.ID == 0 }

// String returns the statement's position, "file:line:col".
func (r Ref) String() string { return r.Pos.String() }

// Proto is a transport protocol.
type Proto uint8

// The protocols kwl speaks of, numbered as in IP headers.
const (
	TCP  Proto = 6
	UDP  Proto = 17
	ICMP Proto = 1
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case ICMP:
		return "icmp"
	}
	return "proto" + itoa(int(p))
}

// Port is a transport protocol and a port number, as in "udp/8000".
type Port struct {
	Proto Proto
	Num   uint16
}

func (p Port) String() string { return p.Proto.String() + "/" + itoa(int(p.Num)) }

// Family restricts a statement to one IP family. Both is the default.
type Family uint8

// The families.
const (
	Both Family = iota
	IPv4
	IPv6
)

// Has reports whether f covers the family of addr.
func (f Family) Has(addr netip.Addr) bool {
	switch f {
	case IPv4:
		return addr.Unmap().Is4()
	case IPv6:
		return !addr.Unmap().Is4()
	}
	return true
}

// Log asks for matching packets to be logged.
type Log struct {
	Level  string // syslog level: emerg, alert, crit, err, warn, notice, info, debug
	Prefix string // log prefix, "" for a backend default derived from the statement
	// Rate lines at most are logged per Per, in bursts of up to Rate: a
	// token bucket of Rate tokens refilled at Rate per Per, one per rule
	// that logs. DefaultLogRate per DefaultLogPer unless the statement
	// says "rate N/DUR".
	Rate int
	Per  time.Duration
}

// The rate of a log clause without "rate": 10 lines a minute, in bursts
// of up to 10, for each rule that logs.
const (
	DefaultLogRate = 10
	DefaultLogPer  = time.Minute
)

// LogRateUnits are the units a log rate is counted in, shortest first:
// both kernels' token buckets (nft limit, xt_limit) count whole packets
// per second, minute, hour or day.
var LogRateUnits = []time.Duration{time.Second, time.Minute, time.Hour, 24 * time.Hour}

// MaxLogPrefix is the longest log prefix: iptables' LOG target keeps 29
// characters (nft 127), and a prefix means the same on every backend.
const MaxLogPrefix = 29

// MaxNameLen is the longest service name. A name goes into the names of
// sets, chains and xt_recent lists and into rule comments, whose lengths
// the kernel bounds (255 for an nft set or chain name, 28 for an
// iptables chain, 199 for a recent list, 255 bytes of a rule's user
// data); the backends shorten what is longer with a hash, and a comment
// of a name of this length stays within the bound.
const MaxNameLen = 64

// MaxTestSteps is the most steps of a test. Each step without a source
// port takes a fresh one from the 25,536 ports from 40000 up, and the
// steps that name a port take theirs, so a test of at most this many
// steps never runs out of ports.
const MaxTestSteps = 10000

// Policy is a checked policy file: the IR.
type Policy struct {
	File     string
	Services []*Service // every service a statement uses, in first-use order
	Doors    []*Door    // knocks (single ports and sequences) that open a service
	Revokes  []*Revoke  // close statements and closing sequences
	Limits   []*Limit
	Allows   []*Allow
	Tests    []*Test

	// Ignores lists, by statement, the lint codes that a
	// "# kwl:ignore CODE" comment silences there (see Filter); nil when
	// there are none.
	Ignores []Ignore
}

// Refs returns the Refs of p's statements indexed by ID, so that a
// caller can keep what it learns of a statement in a slice: index 0 is
// the zero Ref, and an ID no statement of p has is the zero Ref too.
func (p *Policy) Refs() []Ref {
	var refs []Ref
	put := func(r Ref) {
		if r.IsZero() {
			return
		}
		for len(refs) <= r.ID {
			refs = append(refs, Ref{})
		}
		refs[r.ID] = r
	}
	for _, s := range p.Services {
		put(s.Ref)
	}
	for _, d := range p.Doors {
		put(d.Ref)
	}
	for _, r := range p.Revokes {
		put(r.Ref)
	}
	for _, l := range p.Limits {
		put(l.Ref)
	}
	for _, a := range p.Allows {
		put(a.Ref)
	}
	for _, t := range p.Tests {
		put(t.Ref)
	}
	if refs == nil {
		refs = []Ref{{}}
	}
	return refs
}

// An Ignore is what the kwl:ignore comments of one statement silence:
// the diagnostics with one of Codes at a position from the statement's
// start (From) up to, not including, the start of the next statement
// (To; the zero Pos when the statement is the last).
type Ignore struct {
	From, To Pos
	Codes    map[Code]bool
}

// covers reports whether pos lies in the statement of ig.
func (ig Ignore) covers(pos Pos) bool {
	before := func(a, b Pos) bool { return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col }
	return !before(pos, ig.From) && (!ig.To.IsValid() || before(pos, ig.To))
}

// Service is a named set of ports, either built in (ssh, http, ...) or
// defined by a service statement.
type Service struct {
	// Ref is the service statement's; a built-in has ID 0 and the
	// position of its first use.
	Ref
	Name    string
	Ports   []Port
	Forward netip.Addr // valid when the service runs on an internal host behind DNAT
	// Guarded is set when some door opens the service: new connections to
	// it are then dropped unless the source's door is open or an allow
	// covers the source.
	Guarded bool
}

// Door is a knock, or a sequence of knocks, that opens a service for one
// source for a while. A single knock is a sequence of length one.
type Door struct {
	Ref
	Service  *Service
	Sequence []Port        // knock ports, in order; len >= 1
	Within   time.Duration // max gap between consecutive knocks; 0 when len(Sequence) == 1
	Span     time.Duration // max time from the first knock to the last ("in 5s"); 0: none
	Lifetime time.Duration // how long the door stays open after the last knock
	// Once closes the door for the source when it admits a connection
	// (a TCP SYN): a single-use grant. Only for TCP services (E31).
	Once bool
	// Mask4 and Mask6 are the prefix lengths the door is keyed by (per
	// source/24/64): the knock, its sequence and the door count for the
	// knocker's whole prefix, for clients behind a carrier NAT whose
	// knocks and connection leave from different addresses. 32 and 128
	// by default.
	Mask4, Mask6 int
	// Pass lets the knocks go on to the rest of the ruleset (the
	// service on the knock port, the host's rules) instead of dropping
	// them: a knock on a port in use (Shorewall's SetEvent with ACCEPT).
	Pass bool
	// Ignore, when > 0, makes a source that knocks out of order (a knock
	// on a later port of the sequence, not the next one) count for
	// nothing for that long: its knocks of the sequence neither start,
	// advance nor reset an attempt (nfknock's ignored list).
	Ignore time.Duration
	// Reset says what else than a knock of the sequence out of order
	// starts an attempt over.
	Reset  Reset
	From   []netip.Prefix // sources allowed to knock; empty means any
	Family Family
	// Secret, when set, makes the door a secret knock: its one knock is
	// a UDP datagram whose payload is the token of the current window
	// (see TokenWindow), derived from the secret in the file, and each
	// token opens the door once. Sequence then holds that one port.
	Secret *Secret
	// Reject refuses a new connection to the service, when no door of it
	// is open for the source, with a reject (a TCP reset, an ICMP port
	// unreachable) rather than a drop. Every door of a service says the
	// same (E29).
	Reject bool
	Log    *Log
}

// Secret is the file a secret knock's tokens derive from (package
// secret): read by deploy and by kwl knock, never by the checker, the
// simulator or test blocks, which derive stand-in tokens from the path.
type Secret struct {
	Pos  Pos // of the file's name in the statement
	Path string
}

// The windows of secret knocks. A window is TokenWindow long, counted
// from the Unix epoch. Its token opens a door once, from when the
// ruleset holds it (the coming hours' tokens are loaded at once) to the
// end of the window TokenSkew after it, for a client's clock that is
// behind.
const (
	TokenWindow = 30 * time.Second
	TokenSkew   = 1
)

// Reset is what makes a source's attempt at a knock sequence start over,
// besides its own knocks.
type Reset int

// The resets of a sequence. Each one resets on what the one before it
// does, and more.
const (
	// ResetOwn: a knock on a port of the sequence that is not the next
	// one (nor the source's last counted knock, again). The default.
	ResetOwn Reset = iota
	// ResetKnocks ("exclusive"): also a knock on a port of any other
	// knock or close statement of the policy: one attempt in progress
	// per source, as knockd keeps.
	ResetKnocks
	// ResetAny ("strict"): any other packet from the source to the
	// host that conntrack calls new: a connection attempt to any port,
	// a UDP datagram, a ping.
	ResetAny
)

// Revoke closes a service's door for the source that sends it: any one of
// the ports of a close statement, or a closing knock sequence.
type Revoke struct {
	Ref
	Service *Service
	// Ports lists ports any one of which revokes (close ssh on 1599, 1601).
	// Sequence lists ports that revoke only when knocked in order, each
	// within Within of the previous (knock 9000, 8000, 7000 within 5s closes ssh).
	// Exactly one of the two is non-empty.
	Ports    []Port
	Sequence []Port
	Within   time.Duration
	Span     time.Duration // as Door's
	Reset    Reset         // as Door's
	Pass     bool          // as Door's: the knocks go on
	From     []netip.Prefix
	Family   Family
	Log      *Log
}

// Limit caps the rate of new connections to a service.
type Limit struct {
	Ref
	Service *Service
	Count   int           // connections admitted ...
	Window  time.Duration // ... per this window, or 0 for a cap
	// Concurrent makes the limit a cap: at most Count connections of
	// the key open at once (nft ct count, iptables connlimit).
	Concurrent bool
	// PerSource gives each source (after masking) its own counter; when
	// false all sources share one.
	PerSource bool
	Mask4     int           // IPv4 prefix length of the per-source key, 32 by default
	Mask6     int           // IPv6 prefix length of the per-source key, 128 by default
	Ban       time.Duration // when > 0, exceeders are dropped for this long
	// BanAll makes the ban cover every packet the banned source sends to
	// the host itself, on every port and protocol, not only new
	// connections to the service. Its established connections stay.
	BanAll bool
	Family Family
	// Reject refuses what the limit and its ban refuse with a reject (a
	// TCP reset, an ICMP port unreachable) rather than a drop.
	Reject bool
	Log    *Log
}

// Allow lets sources reach a service without a knock and without limits.
type Allow struct {
	Ref
	Service *Service
	From    []netip.Prefix // empty means any source
	Family  Family
	Log     *Log
}

// Verdict is what happened to a packet.
type Verdict uint8

// The verdicts.
const (
	Accept Verdict = iota
	Drop
	Reject
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	}
	return "reject"
}

// Test is a scenario: packets at times, each with an expected verdict.
// Every test starts from an empty state.
type Test struct {
	Ref
	Name string
	// Start is the wall-clock time of the test's time 0: the "at TIME"
	// of its block, or DefaultTestStart. Secret knocks' tokens depend on it.
	Start time.Time
	Steps []*Step
}

// DefaultTestStart is when a test block that names no time starts.
var DefaultTestStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TokenKind says what a step's datagram carries in place of a payload.
type TokenKind uint8

// The tokens a step may send.
const (
	NoToken     TokenKind = iota
	ValidToken            // the token of the step's window
	StaleToken            // the token of a window that ended TokenSkew windows ago
	ForgedToken           // a token of another secret
)

// StepKind says what packet a step sends.
type StepKind uint8

// The step kinds.
const (
	// New is a connection attempt: a TCP SYN, or a UDP datagram.
	New StepKind = iota
	// Data is a packet of an existing flow (same source, source port,
	// destination and port) in the original direction: a TCP ACK or a
	// UDP datagram. If the flow is unknown it is whatever conntrack makes of it.
	Data
)

// TCPFlags are the flags of a TCP header, with the bits they have in
// the header's flags byte.
type TCPFlags uint8

// The TCP flags.
const (
	FIN TCPFlags = 0x01
	SYN TCPFlags = 0x02
	RST TCPFlags = 0x04
	PSH TCPFlags = 0x08
	ACK TCPFlags = 0x10
	URG TCPFlags = 0x20
	ECE TCPFlags = 0x40
	CWR TCPFlags = 0x80
)

// flagLetters are the letters of the flags, in the order of their bits,
// as tcpdump and nmap print them (tcpdump prints ACK as ".").
const flagLetters = "FSRPAUEW"

// String returns the flags' letters in the order of their bits (SYN and
// ACK are "SA", FIN, PSH and URG "FPU"), or "none" when no flag is set.
func (f TCPFlags) String() string {
	if f == 0 {
		return "none"
	}
	var b []byte
	for i := 0; i < 8; i++ {
		if f&(1<<i) != 0 {
			b = append(b, flagLetters[i])
		}
	}
	return string(b)
}

// ParseTCPFlags reads flags written as letters (S A F R P U E W, in any
// order) or "none". It reports the first letter that is not a flag, or
// repeats one, as bad.
func ParseTCPFlags(s string) (f TCPFlags, bad string, ok bool) {
	if s == "none" {
		return 0, "", true
	}
	if s == "" {
		return 0, "", false
	}
	for _, r := range s {
		i := strings.IndexRune(flagLetters, r)
		if i < 0 || f&(1<<i) != 0 {
			return 0, string(r), false
		}
		f |= 1 << i
	}
	return f, "", true
}

// Step is one packet of a test.
type Step struct {
	Pos Pos
	At  time.Duration // since the start of the test; never decreases
	Src netip.Addr
	// SPort is the source port. 0 means: for a New step, a fresh ephemeral
	// port; for a Data step, the port of the latest New step from Src to
	// the same Port.
	SPort uint16
	Dst   netip.Addr // invalid: the firewall itself
	Port  Port
	Kind  StepKind
	// Flags, when HasFlags, are the TCP flags of the packet, exactly: a
	// New step with flags is one packet from a fresh source port (an ACK
	// scan's probe), a Data step with flags a packet of the latest flow.
	// Without them a New step is a SYN and a Data step an ACK with PSH.
	Flags    TCPFlags
	HasFlags bool
	// Token, for a datagram to a secret knock's port, says which token
	// it carries, and Secret is that knock's (a stand-in secret is
	// derived from its path).
	Token  TokenKind
	Secret *Secret
	Expect Verdict
	// ExpectOn overrides Expect for named backends, for steps at a
	// boundary where the kernels' mechanisms differ (expect drop
	// iptables accept), in the order written, each backend at most once.
	// The names are the registry's (compile.Lookup), which compile.Check
	// holds them to; the checker knows no backend.
	ExpectOn []BackendVerdict
}

// BackendVerdict is a step's expected verdict on one backend.
type BackendVerdict struct {
	Pos     Pos
	Backend string
	Verdict Verdict
}

// ExpectFor returns the verdict the step expects on a backend: its
// override for that backend, or Expect.
func (s *Step) ExpectFor(backend string) Verdict {
	for _, o := range s.ExpectOn {
		if o.Backend == backend {
			return o.Verdict
		}
	}
	return s.Expect
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
