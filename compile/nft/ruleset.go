// Package nft holds kwl's nftables backend: a ruleset held as data
// (one table, its sets and chains, rules made of expressions), the lowering
// of a checked policy (lang.Policy) into it, and its rendering as `nft -f`
// input. The same data is executed by the simulator (package sim) and sent
// to the kernel over netlink by deploy, so that what is simulated is what
// is deployed. Its netlink encoding is package deploy/nftnl, Linux-only:
// this package, and the simulator with it, build on every system.
package nft

import (
	"net/netip"
	"time"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/secret"
)

// Name is the backend's name, as --backend and a test step's override
// spell it (compile.Lookup).
const Name = "nft"

// Ruleset is everything kwl loads: one table it owns.
type Ruleset struct {
	Table *Table
}

// Table is an nftables table. kwl uses family "inet" and name "kwl".
type Table struct {
	Family string // "inet"
	Name   string // "kwl"
	Sets   []*Set
	Chains []*Chain
}

// KeyType is the data type of a set's elements.
type KeyType string

// The key types kwl uses.
const (
	IPv4Addr KeyType = "ipv4_addr"
	IPv6Addr KeyType = "ipv6_addr"
	// CtStateKey is the type of a set keyed by ct state. Every packet a
	// limit counts is new, so such a set has one key for all sources of
	// both families: the key of a shared limit's slots.
	CtStateKey KeyType = "ct_state"
	// TokenKey is the type of a set of tokens: 16 bytes of a UDP
	// payload (the Token field; typeof @th,64,128).
	TokenKey KeyType = "@th,64,128"
)

// An Element is a set's element loaded with the set, with its own
// lifetime: a token of a window, until the window's end.
type Element struct {
	Key     [16]byte
	Timeout time.Duration // from the load; 0: the set's
}

// Set is a named set filled from the packet path (a dynamic set).
type Set struct {
	Name string
	Type KeyType
	// Size is the maximum number of elements; 0 means the kernel default,
	// 65535 (nft_dynset binds an unsized set with size 0xffff). When the
	// set is full, add and update create nothing and the rule does not match.
	Size int
	// Timeout is the default element lifetime; 0 means a set without
	// timeouts (flags dynamic alone), whose elements never expire.
	Timeout time.Duration
	// Origin is the statement the set serves.
	Origin lang.Ref
	// Comment says what the set holds ("doors to ssh", "ban for ssh").
	Comment string
	// Elements are loaded with the set (tokens); a set of them is not
	// filled from the packet path, only emptied.
	Elements []Element
	// Tokens, on a set of TokenKey, says whose tokens the set holds.
	// Lower leaves Elements empty, since it reads no secret: whoever
	// loads the set fills them (TokenSource.Elements), deploy from the
	// secret's file, the simulator from a stand-in.
	Tokens *TokenSource
}

// A TokenSource is a secret knock's secret and windows: the tokens of a
// set of TokenKey derive from them (package secret).
type TokenSource struct {
	Secret string        // the secret's file
	Every  time.Duration // the length of a window
	// Skew is how many windows after its own a token is still taken
	// in: from its load to the end of window w+Skew. Windows before
	// now's by Skew are loaded too, for a client's clock behind.
	Skew int64
}

// Windows returns the windows whose tokens a set loaded at now for d
// holds: from the first still taken at now, Skew before now's own, to
// the one of now+d.
func (ts *TokenSource) Windows(now time.Time, d time.Duration) (from, to int64) {
	return secret.Window(now, ts.Every) - ts.Skew, secret.Window(now.Add(d), ts.Every)
}

// Elements returns the tokens of windows from to to, inclusive, under
// key, as elements of a set loaded at now: each lives until the end of
// the window Skew after its own, and a token whose time has passed is
// left out.
func (ts *TokenSource) Elements(key []byte, now time.Time, from, to int64) []Element {
	var out []Element
	for w := from; w <= to; w++ {
		left := secret.Start(w+ts.Skew+1, ts.Every).Sub(now).Truncate(time.Millisecond)
		if left <= 0 {
			continue
		}
		out = append(out, Element{Key: secret.Token(key, w), Timeout: left})
	}
	return out
}

// Hook is the netfilter hook a base chain is attached to.
type Hook string

// The hooks kwl uses.
const (
	Prerouting Hook = "prerouting"
	Input      Hook = "input"
	Forward    Hook = "forward"
)

// Chain is a chain: a base chain when Hook is set, else a regular chain
// reached by jump or goto.
type Chain struct {
	Name     string
	Type     string // "filter" or "nat" for base chains
	Hook     Hook
	Priority int         // -100 dstnat, 0 filter, ...
	Policy   VerdictKind // Accept for base chains: kwl never drops what it does not mention
	Rules    []*Rule
}

// Rule is a list of expressions evaluated in order; the first that does
// not match ends the rule.
type Rule struct {
	Exprs []Expr
	// Origin is the statement that produced the rule, reported by the
	// simulator as the rule that decided a packet. Zero for rules that
	// belong to no statement (the established-accept).
	Origin  lang.Ref
	Comment string
}

// Expr is one expression of a rule: *Match, *TCPFlags, *Lookup, *Dynset,
// *Limit, *Log, *Counter, *NAT or *Verdict.
type Expr interface{ isExpr() }

// Field is a packet or connection field that a rule can read.
type Field string

// The fields kwl uses, named as nft names them.
const (
	NFProto       Field = "meta nfproto" // ipv4 / ipv6
	L4Proto       Field = "meta l4proto" // tcp / udp / icmp
	THDport       Field = "th dport"     // transport destination port
	IPSaddr       Field = "ip saddr"     // IPv4 source
	IPDaddr       Field = "ip daddr"     // IPv4 destination
	IP6Saddr      Field = "ip6 saddr"    // IPv6 source
	IP6Daddr      Field = "ip6 daddr"    // IPv6 destination
	CtState       Field = "ct state"     // conntrack state: new, established, related, invalid
	CtStatus      Field = "ct status"    // conntrack status bits: dnat
	CtOrigDport   Field = "ct original proto-dst"
	CtOrigIPDaddr Field = "ct original ip daddr"
	// FibDaddrType is the route type of the destination address: "local"
	// when the packet is addressed to the host itself (nft_fib, RTN_LOCAL).
	FibDaddrType Field = "fib daddr type"
	// UDPLength is a UDP datagram's length field: 8 header bytes and its
	// payload's.
	UDPLength Field = "udp length"
	// Token is a UDP payload's first 16 bytes, as a set key (Key.Field):
	// 128 bits at bit 64 of the transport header. nft adds no dependency
	// to a raw payload expression: a rule that keys by Token tests
	// L4Proto udp before it.
	Token Field = "@th,64,128"
)

// Match tests a field against a list of values: it matches when the field
// equals (or, for addresses, lies in) any of them, or none of them if Neg.
//
// Values are typed by the field: lang.Proto for L4Proto, uint16 for ports,
// netip.Prefix for addresses, string ("ipv4", "ipv6", "new",
// "established", "related", "invalid", "dnat", "local") for NFProto,
// CtState, CtStatus and FibDaddrType.
type Match struct {
	Field  Field
	Neg    bool
	Values []any
}

// The TCP flags, with the bits they have in the header's flags byte
// (include/net/tcp.h, TCPHDR_FIN ... TCPHDR_CWR).
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEcn uint8 = 0x40 // ECE, which nft calls ecn
	TCPCwr uint8 = 0x80
)

// TCPFlags tests a TCP packet's flags: it matches when the flags, masked
// with Mask, equal Value (differ from it if Neg), as in
// `tcp flags & (syn | ack) == syn`, a SYN without ACK. A packet that is
// not TCP does not match either way: nft makes the test depend on
// `meta l4proto tcp`.
type TCPFlags struct {
	Mask, Value uint8
	Neg         bool
}

// Key is the key a set expression computes from a packet: an address
// field, masked to Prefix bits (0 means the whole address), or CtState,
// the same for every new packet.
type Key struct {
	Field  Field // IPSaddr, IP6Saddr or CtState
	Prefix int
}

// Lookup matches when the packet's key is in the set (not in it if Neg).
// Expired elements are not found.
type Lookup struct {
	Set string
	Key Key
	Neg bool
}

// DynOp is what a dynamic-set expression does to the set.
type DynOp string

// The operations. Add creates a missing element and never refreshes an
// existing one; Update creates or refreshes its timeout; Delete removes it.
// (net/netfilter/nft_dynset.c: NFT_DYNSET_OP_ADD, _UPDATE, _DELETE.)
const (
	Add    DynOp = "add"
	Update DynOp = "update"
	Delete DynOp = "delete"
)

// Dynset adds, updates or deletes the packet's key in a set from the
// packet path. With Add and Update the expression matches once the element
// exists (found or created), then the element's Limit, if any, decides;
// it does not match when the set is full. Delete always matches.
type Dynset struct {
	Op      DynOp
	Set     string
	Key     Key
	Timeout time.Duration // 0: the set's timeout
	// Limit is a stateful expression kept per element: each element has
	// its own token bucket, created full.
	Limit *Limit
	// Connlimit is a stateful expression kept per element: each element
	// counts its own connections. A set of such elements has no timeout
	// (the kernel refuses one: nft_dynset_expr_alloc, NFT_EXPR_GC).
	Connlimit *Connlimit
}

// Connlimit is "ct count N" (net/netfilter/nft_connlimit.c over
// nf_conncount): it adds the packet's connection to its list of
// connections and matches when the list holds at most Count live ones,
// the packet's own included; Over inverts the match. A connection is
// live while conntrack keeps it, a TCP one until TIME_WAIT or CLOSE.
type Connlimit struct {
	Count uint32
	Over  bool
}

// Limit is a token bucket (net/netfilter/nft_limit.c). It starts full with
// Burst packets' worth of tokens and refills at Rate per Unit; a packet that
// finds enough tokens takes them and matches; one that does not takes none
// and does not match. Over inverts the match.
type Limit struct {
	Rate  uint64
	Unit  time.Duration // time.Second, time.Minute, time.Hour or 24*time.Hour
	Burst uint32        // 0 means the kernel default, 5
	Over  bool
}

// Log logs the packet and continues.
type Log struct {
	Level  string
	Prefix string
}

// Counter counts packets and bytes and continues.
type Counter struct{}

// NAT rewrites the destination (dnat) and continues to the next hook.
type NAT struct {
	Addr netip.Addr
	Port uint16 // 0: keep the port
}

// VerdictKind is a verdict's kind.
type VerdictKind string

// The verdicts.
const (
	Accept VerdictKind = "accept"
	Drop   VerdictKind = "drop"
	Reject VerdictKind = "reject" // an ICMP or ICMPv6 port unreachable (nft's icmpx)
	// RejectTCPReset answers a TCP packet with a reset; a rule that ends
	// with it matches TCP only.
	RejectTCPReset VerdictKind = "reject with tcp reset"
	Jump           VerdictKind = "jump"
	Goto           VerdictKind = "goto"
	Return         VerdictKind = "return"
	Continue       VerdictKind = "continue"
)

// Verdict ends the rule with a verdict; Chain names the target of Jump and Goto.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

func (*Match) isExpr()     {}
func (*TCPFlags) isExpr()  {}
func (*Lookup) isExpr()    {}
func (*Dynset) isExpr()    {}
func (*Limit) isExpr()     {}
func (*Connlimit) isExpr() {}
func (*Log) isExpr()       {}
func (*Counter) isExpr()   {}
func (*NAT) isExpr()       {}
func (*Verdict) isExpr()   {}
