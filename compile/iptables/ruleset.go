// Package iptables holds kwl's iptables backend: a ruleset held as data
// (tables, kwl's own chains, rules made of matches and a target), the
// lowering of a checked policy (lang.Policy) into it using the `recent`
// match as Shorewall does, and its rendering as iptables-restore and
// ip6tables-restore input. The simulator (package sim) executes the same
// data.
package iptables

import (
	"net/netip"

	"kwl.dev/kwl/lang"
)

// Name is the backend's name, as --backend and a test step's override
// spell it (compile.Lookup).
const Name = "iptables"

// Ruleset is kwl's iptables ruleset: one for IPv4 (iptables-restore) and
// one for IPv6 (ip6tables-restore). Lists of the recent match are shared by
// the two, per network namespace, by name (net/netfilter/xt_recent.c).
type Ruleset struct {
	V4 *Family
	V6 *Family
}

// Family is the ruleset of one IP family.
type Family struct {
	IPv6   bool
	Tables []*Table // "raw", "nat", "filter", as needed
}

// Table is an iptables table.
type Table struct {
	Name   string
	Chains []*Chain
}

// Chain is a chain. Builtin chains (INPUT, FORWARD, PREROUTING) hold only
// the jumps into kwl's own chains, which kwl owns and may flush.
type Chain struct {
	Name    string
	Builtin bool
	Policy  string // "ACCEPT" for builtin chains, "" for kwl's own ("-")
	Rules   []*Rule
}

// Rule is one iptables rule: all of its matches must match, then the
// target runs.
type Rule struct {
	Proto  lang.Proto     // 0: any
	Src    []netip.Prefix // -s; any of them (one rule per prefix when rendered if needed)
	Dst    []netip.Prefix // -d
	DPorts []uint16       // --dport, or -m multiport --dports when more than one
	// TCPFlags is -m tcp --tcp-flags; it needs Proto TCP.
	TCPFlags *TCPFlags
	// CtState is -m conntrack --ctstate (NEW, ESTABLISHED, RELATED, INVALID).
	CtState []string
	// CtOrigDst and CtOrigDport match the original destination of a DNAT'ed
	// connection (-m conntrack --ctorigdst, --ctorigdstport).
	CtOrigDst   netip.Prefix
	CtOrigDport uint16
	// DstLocal is -m addrtype --dst-type LOCAL: the packet is addressed
	// to the host itself.
	DstLocal  bool
	Recent    *Recent
	Connlimit *Connlimit
	Limit     *Limit
	Target    Target
	// Origin is the statement that produced the rule; zero for rules that
	// belong to none.
	Origin  lang.Ref
	Comment string
}

// TCPFlags is the tcp match's --tcp-flags MASK COMP (xt_tcpudp): the
// packet's flags, masked with Mask, equal Comp, or differ from it with
// Invert ("! --tcp-flags SYN,ACK SYN").
type TCPFlags struct {
	Mask, Comp lang.TCPFlags
	Invert     bool
}

// RecentOp is the recent match's command.
type RecentOp string

// The commands of the recent match.
const (
	Set    RecentOp = "--set"
	Rcheck RecentOp = "--rcheck"
	Update RecentOp = "--update"
	Remove RecentOp = "--remove"
)

// Recent is the recent match (xt_recent), always on the source address
// (--rsource).
type Recent struct {
	Name     string
	Op       RecentOp
	Seconds  int // --seconds, 0: not given
	Hitcount int // --hitcount, 0: not given
	// Mask is the prefix length of --mask; 0 means the full address. The
	// kernel copies the mask when the list is created, so every rule on a
	// list must use the same one.
	Mask int
	// Shared is --mask 0.0.0.0 (or ::): every source of the family is
	// one entry, the key of a limit shared by all sources.
	Shared bool
	Reap   bool
	Invert bool // ! --set etc.
}

// Connlimit is the connlimit match (xt_connlimit over nf_conncount) on
// the source address: it counts the packet's connection among those of
// its key, the source masked to Mask bits (0: every source of the family
// is one key), and matches when the key has more than Above live ones,
// the packet's own included.
type Connlimit struct {
	Above int
	Mask  int
}

// Limit is the limit match (xt_limit): a token bucket of Burst packets
// refilled at Rate per Unit ("second", "minute", "hour", "day").
type Limit struct {
	Rate  int
	Unit  string
	Burst int // 0 means the default, 5
}

// TargetKind is a rule's target.
type TargetKind string

// The targets kwl uses. Jump targets name a chain in Target.Chain.
const (
	ACCEPT TargetKind = "ACCEPT"
	DROP   TargetKind = "DROP"
	REJECT TargetKind = "REJECT"
	LOG    TargetKind = "LOG"
	RETURN TargetKind = "RETURN"
	DNAT   TargetKind = "DNAT"
	JUMP   TargetKind = "jump"
	// NONE is a rule without -j: its matches run (and a recent match
	// records its hit) and evaluation continues with the next rule.
	NONE TargetKind = ""
)

// Target is what a matching rule does.
type Target struct {
	Kind      TargetKind
	Chain     string     // for JUMP
	LogLevel  string     // for LOG
	LogPrefix string     // for LOG
	ToDest    netip.Addr // for DNAT
	ToPort    uint16     // for DNAT, 0: keep
	// RejectWith is REJECT's --reject-with: "tcp-reset" (in a rule that
	// matches -p tcp), "icmp-port-unreachable" or "icmp6-port-unreachable".
	RejectWith string
}
