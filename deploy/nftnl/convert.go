//go:build linux

package nftnl

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
)

// This file turns the ruleset data into github.com/google/nftables objects
// that, added to one batch, give the kernel exactly what `nft -f` of
// Render() gives it: the same expressions in the same order, including the
// dependencies nft inserts on its own (a `meta nfproto` test before the
// first read of an IPv4 or IPv6 header field of an inet rule), the
// shortened loads nft uses for byte-aligned prefixes, and anonymous sets
// for lists of values. The test compares `nft list table` of both loads.

// Ruleset is a ruleset as google/nftables objects, in the order in which a
// batch must add them: the table, its named sets, its chains, then the
// rules (each after the anonymous sets it uses).
type Ruleset struct {
	Table  *nftables.Table
	Sets   []*Set
	Chains []*nftables.Chain
	Rules  []*Rule
}

// Set is a named set and the ruleset set it comes from.
type Set struct {
	Set  *nftables.Set
	From *nft.Set
}

// Rule is one rule, the anonymous sets it uses (to be added before
// it, in the same batch), and where it comes from.
type Rule struct {
	Rule  *nftables.Rule
	Anon  []AnonSet
	From  *nft.Rule
	Chain *nft.Chain
	Index int // position of the rule in its chain, from 0
}

// AnonSet is an anonymous constant set with its elements.
type AnonSet struct {
	Set   *nftables.Set
	Elems []nftables.SetElement
}

// Error is a ruleset that cannot be expressed over netlink: a value
// of the wrong type for its field, an unknown field or verdict. It names
// the statement the rule comes from.
type Error struct {
	Origin lang.Ref
	Chain  string
	Index  int
	Err    error
}

// Error says which rule could not be converted, and where its statement is.
func (e *Error) Error() string {
	where := fmt.Sprintf("chain %s rule %d", e.Chain, e.Index+1)
	if !e.Origin.IsZero() {
		return fmt.Sprintf("%s: %s: %v", e.Origin, where, e.Err)
	}
	return fmt.Sprintf("%s: %v", where, e.Err)
}

// Unwrap returns the reason the rule could not be converted.
func (e *Error) Unwrap() error { return e.Err }

// The kernel's bounds on what one object may hold (nf_tables_api.c,
// uapi nf_tables.h). nft.Lower keeps within them; Convert refuses what does
// not, so that no batch fails half-way in the kernel.
const (
	// MaxRuleExprs is the most expressions of a rule (NFT_RULE_MAXEXPRS);
	// the kernel also refuses a rule whose expressions take 4 kB or more
	// (EFBIG), which kwl's rules, of at most a few dozen small
	// expressions, stay far below.
	MaxRuleExprs = 128
	// MaxName is the longest name of a table, chain or set, without the
	// terminating NUL (NFT_NAME_MAXLEN 256 holds it).
	MaxName = 255
	// MaxUserData is the most bytes of a rule's or set's user data (its
	// comment): NFT_USERDATA_MAXLEN.
	MaxUserData = 256
)

// Convert converts the ruleset into google/nftables objects. Set IDs are
// numbered from 1 within the result, so the objects belong in one batch.
func Convert(r *nft.Ruleset) (*Ruleset, error) {
	if r == nil || r.Table == nil {
		return nil, fmt.Errorf("empty ruleset")
	}
	fam, err := tableFamily(r.Table.Family)
	if err != nil {
		return nil, err
	}
	n := &Ruleset{Table: &nftables.Table{Name: r.Table.Name, Family: fam}}
	c := &converter{n: n, named: map[string]*nftables.Set{}}
	for _, s := range r.Table.Sets {
		ns, err := c.set(s)
		if err != nil {
			return nil, err
		}
		n.Sets = append(n.Sets, &Set{Set: ns, From: s})
		c.named[s.Name] = ns
	}
	chains := map[string]*nftables.Chain{}
	for _, ch := range r.Table.Chains {
		nc, err := c.chain(ch)
		if err != nil {
			return nil, err
		}
		n.Chains = append(n.Chains, nc)
		chains[ch.Name] = nc
	}
	for _, ch := range r.Table.Chains {
		for i, rule := range ch.Rules {
			nr, err := c.rule(chains[ch.Name], rule)
			if err != nil {
				return nil, &Error{Origin: rule.Origin, Chain: ch.Name, Index: i, Err: err}
			}
			nr.Chain, nr.Index = ch, i
			n.Rules = append(n.Rules, nr)
		}
	}
	return n, nil
}

func tableFamily(f string) (nftables.TableFamily, error) {
	switch f {
	case "inet", "":
		return nftables.TableFamilyINet, nil
	case "ip":
		return nftables.TableFamilyIPv4, nil
	case "ip6":
		return nftables.TableFamilyIPv6, nil
	}
	return 0, fmt.Errorf("table family %q: kwl handles inet, ip and ip6", f)
}

// KeyDatatype returns the nftables data type of a set key type.
func KeyDatatype(t nft.KeyType) (nftables.SetDatatype, error) {
	switch t {
	case nft.TokenKey:
		// typeof @th,64,128: an integer of 16 bytes; the kernel checks
		// only the key's length.
		dt := nftables.TypeInteger
		dt.Bytes = 16
		return dt, nil
	case nft.IPv4Addr:
		return nftables.TypeIPAddr, nil
	case nft.IPv6Addr:
		return nftables.TypeIP6Addr, nil
	case nft.CtStateKey:
		return nftables.TypeCTState, nil
	}
	return nftables.TypeInvalid, fmt.Errorf("set key type %q", t)
}

type converter struct {
	n      *Ruleset
	named  map[string]*nftables.Set
	nextID uint32
}

func (c *converter) id() uint32 {
	c.nextID++
	return c.nextID
}

func (c *converter) set(s *nft.Set) (*nftables.Set, error) {
	kt, err := KeyDatatype(s.Type)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", s.Name, err)
	}
	if len(s.Name) > MaxName {
		return nil, fmt.Errorf("set name of %d bytes, longer than the kernel takes (%d): %.40s...", len(s.Name), MaxName, s.Name)
	}
	// Addresses are in network byte order; ct state is a host-order
	// bitmask, as nft declares it.
	order := binaryutil.BigEndian
	if s.Type == nft.CtStateKey {
		order = binaryutil.NativeEndian
	}
	return &nftables.Set{
		Table: c.n.Table,
		ID:    c.id(),
		Name:  s.Name,
		// Every kwl set is filled from the packet path (flags dynamic),
		// and its elements carry timeouts (flags timeout) but where they
		// count connections.
		Dynamic:      true,
		HasTimeout:   s.Timeout > 0 || len(s.Elements) > 0 || s.Tokens != nil,
		Timeout:      s.Timeout,
		KeyType:      kt,
		KeyByteOrder: order,
		Comment:      s.Comment,
		Size:         uint32(s.Size),
	}, nil
}

func (c *converter) chain(ch *nft.Chain) (*nftables.Chain, error) {
	if len(ch.Name) > MaxName {
		return nil, fmt.Errorf("chain name of %d bytes, longer than the kernel takes (%d): %.40s...", len(ch.Name), MaxName, ch.Name)
	}
	nc := &nftables.Chain{Name: ch.Name, Table: c.n.Table}
	if ch.Hook == "" {
		return nc, nil
	}
	switch ch.Hook {
	case nft.Prerouting:
		nc.Hooknum = nftables.ChainHookPrerouting
	case nft.Input:
		nc.Hooknum = nftables.ChainHookInput
	case nft.Forward:
		nc.Hooknum = nftables.ChainHookForward
	default:
		return nil, fmt.Errorf("chain %s: unknown hook %q", ch.Name, ch.Hook)
	}
	switch ch.Type {
	case "filter", "":
		nc.Type = nftables.ChainTypeFilter
	case "nat":
		nc.Type = nftables.ChainTypeNAT
	default:
		return nil, fmt.Errorf("chain %s: unknown type %q", ch.Name, ch.Type)
	}
	nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority))
	pol := nftables.ChainPolicyAccept
	switch ch.Policy {
	case nft.Accept, "":
	case nft.Drop:
		pol = nftables.ChainPolicyDrop
	default:
		return nil, fmt.Errorf("chain %s: policy %q", ch.Name, ch.Policy)
	}
	nc.Policy = &pol
	return nc, nil
}

// ruleConv builds the expressions of one rule. fam is the network
// protocol the rule has established so far (unix.NFPROTO_IPV4/IPV6 or 0),
// as nft tracks it to decide whether a dependency must be inserted.
type ruleConv struct {
	c     *converter
	exprs []expr.Any
	anon  []AnonSet
	fam   byte
	// l4 is the transport protocol the rule has established so far
	// (meta l4proto tcp), 0 when none.
	l4 byte
}

func (c *converter) rule(ch *nftables.Chain, r *nft.Rule) (*Rule, error) {
	rc := &ruleConv{c: c}
	for _, e := range r.Exprs {
		if err := rc.expr(e); err != nil {
			return nil, err
		}
	}
	rc.exprs = mergePayloads(rc.exprs)
	if len(rc.exprs) > MaxRuleExprs {
		return nil, fmt.Errorf("%d expressions, more than the kernel takes in one rule (%d)", len(rc.exprs), MaxRuleExprs)
	}
	nr := &nftables.Rule{Table: c.n.Table, Chain: ch, Exprs: rc.exprs}
	if r.Comment != "" {
		nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
		if len(nr.UserData) > MaxUserData {
			return nil, fmt.Errorf("comment of %d bytes, more than the kernel keeps (%d)", len(nr.UserData), MaxUserData)
		}
	}
	return &Rule{Rule: nr, Anon: rc.anon, From: r}, nil
}

func (rc *ruleConv) add(es ...expr.Any) { rc.exprs = append(rc.exprs, es...) }

// mergePayloads joins two loads of adjacent bytes of the transport
// header, each compared for equality, into one load and one comparison,
// as nft does for "th dport 62201 udp length 24": so that a rule loaded
// over netlink is the rule nft -f loads, byte for byte.
func mergePayloads(es []expr.Any) []expr.Any {
	out := es[:0:0]
	for i := 0; i < len(es); i++ {
		if i+3 < len(es) {
			p1, ok1 := es[i].(*expr.Payload)
			c1, ok2 := es[i+1].(*expr.Cmp)
			p2, ok3 := es[i+2].(*expr.Payload)
			c2, ok4 := es[i+3].(*expr.Cmp)
			if ok1 && ok2 && ok3 && ok4 && p1.Base == expr.PayloadBaseTransportHeader && p2.Base == p1.Base &&
				p1.OperationType == expr.PayloadLoad && p2.OperationType == expr.PayloadLoad &&
				p2.Offset == p1.Offset+p1.Len && p1.Len+p2.Len <= 16 && c1.Op == expr.CmpOpEq && c2.Op == expr.CmpOpEq &&
				p1.DestRegister == 1 && p2.DestRegister == 1 && c1.Register == 1 && c2.Register == 1 {
				out = append(out, &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: p1.Base, Offset: p1.Offset, Len: p1.Len + p2.Len},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: slices.Concat(c1.Data, c2.Data)})
				i += 3
				continue
			}
		}
		out = append(out, es[i])
	}
	return out
}

// set returns the set named name, for a lookup or an update of the key
// key, which it loads into register 1. A set the ruleset does not
// declare is left to the kernel to refuse (ENOENT), so that a rule naming
// a missing set fails the batch like any other kernel error.
func (rc *ruleConv) set(name string, key nft.Key) (*nftables.Set, error) {
	s, ok := rc.c.named[name]
	if !ok {
		s = &nftables.Set{Name: name}
	}
	return s, rc.key(key)
}

func (rc *ruleConv) expr(e nft.Expr) error {
	switch e := e.(type) {
	case *nft.Match:
		return rc.match(e)
	case *nft.TCPFlags:
		rc.tcpFlags(e)
	case *nft.Lookup:
		s, err := rc.set(e.Set, e.Key)
		if err != nil {
			return err
		}
		rc.add(&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: e.Neg})
	case *nft.Dynset:
		s, err := rc.set(e.Set, e.Key)
		if err != nil {
			return err
		}
		d := &expr.Dynset{SrcRegKey: 1, SetName: s.Name, SetID: s.ID, Timeout: e.Timeout}
		switch e.Op {
		case nft.Add:
			d.Operation = unix.NFT_DYNSET_OP_ADD
		case nft.Update:
			d.Operation = unix.NFT_DYNSET_OP_UPDATE
		case nft.Delete:
			d.Operation = nftDynsetOpDelete
		default:
			return fmt.Errorf("dynset operation %q", e.Op)
		}
		if e.Limit != nil {
			l, err := limitExpr(e.Limit)
			if err != nil {
				return err
			}
			d.Exprs = []expr.Any{l}
		}
		if e.Connlimit != nil {
			d.Exprs = append(d.Exprs, connlimitExpr(e.Connlimit))
		}
		rc.add(d)
	case *nft.Connlimit:
		rc.add(connlimitExpr(e))
	case *nft.Limit:
		l, err := limitExpr(e)
		if err != nil {
			return err
		}
		rc.add(l)
	case *nft.Log:
		l := &expr.Log{}
		if e.Prefix != "" {
			l.Key |= 1 << unix.NFTA_LOG_PREFIX
			l.Data = []byte(e.Prefix)
		}
		if e.Level != "" {
			lv, ok := logLevels[e.Level]
			if !ok {
				return fmt.Errorf("log level %q", e.Level)
			}
			l.Key |= 1 << unix.NFTA_LOG_LEVEL
			l.Level = lv
		}
		rc.add(l)
	case *nft.Counter:
		rc.add(&expr.Counter{})
	case *nft.NAT:
		return rc.nat(e)
	case *nft.Verdict:
		return rc.verdict(e)
	case nil:
		return fmt.Errorf("nil expression")
	default:
		return fmt.Errorf("expression %T", e)
	}
	return nil
}

// logLevels are the syslog levels by nft's names (nft log level).
var logLevels = map[string]expr.LogLevel{
	"emerg": expr.LogLevelEmerg, "alert": expr.LogLevelAlert, "crit": expr.LogLevelCrit,
	"err": expr.LogLevelErr, "warn": expr.LogLevelWarning, "notice": expr.LogLevelNotice,
	"info": expr.LogLevelInfo, "debug": expr.LogLevelDebug,
}

func connlimitExpr(c *nft.Connlimit) *expr.Connlimit {
	e := &expr.Connlimit{Count: c.Count}
	if c.Over {
		e.Flags = expr.NFT_CONNLIMIT_F_INV
	}
	return e
}

func limitExpr(l *nft.Limit) (*expr.Limit, error) {
	var unit expr.LimitTime
	switch l.Unit {
	case time.Second:
		unit = expr.LimitTimeSecond
	case time.Minute:
		unit = expr.LimitTimeMinute
	case time.Hour:
		unit = expr.LimitTimeHour
	case 24 * time.Hour:
		unit = expr.LimitTimeDay
	case 7 * 24 * time.Hour:
		unit = expr.LimitTimeWeek
	default:
		return nil, fmt.Errorf("limit unit %v: nftables counts per second, minute, hour, day or week", l.Unit)
	}
	burst := l.Burst
	if burst == 0 {
		// nft sends burst 5 when none is given (google/nftables#173 shows
		// nft --debug=netlink: "limit rate 10/second burst 5").
		burst = 5
	}
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: l.Rate, Unit: unit, Burst: burst, Over: l.Over}, nil
}

func (rc *ruleConv) nat(n *nft.NAT) error {
	if !n.Addr.IsValid() {
		return fmt.Errorf("dnat without an address")
	}
	fam := uint32(unix.NFPROTO_IPV4)
	if !n.Addr.Unmap().Is4() {
		fam = unix.NFPROTO_IPV6
	}
	rc.add(&expr.Immediate{Register: 1, Data: addrBytes(n.Addr)})
	x := &expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: 1}
	if n.Port != 0 {
		rc.add(&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(n.Port)})
		x.RegProtoMin = 2
		x.Specified = true
	}
	rc.add(x)
	return nil
}

func (rc *ruleConv) verdict(v *nft.Verdict) error {
	var k expr.VerdictKind
	switch v.Kind {
	case nft.Accept:
		k = expr.VerdictAccept
	case nft.Drop:
		k = expr.VerdictDrop
	case nft.Reject:
		// nft's bare `reject` in an inet table: ICMPx port unreachable,
		// which the kernel turns into ICMP or ICMPv6 (nft_reject_inet.c).
		rc.add(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
		return nil
	case nft.RejectTCPReset:
		rc.add(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
		return nil
	case nft.Jump:
		k = expr.VerdictJump
	case nft.Goto:
		k = expr.VerdictGoto
	case nft.Return:
		k = expr.VerdictReturn
	case nft.Continue:
		k = expr.VerdictContinue
	default:
		return fmt.Errorf("verdict %q", v.Kind)
	}
	if (k == expr.VerdictJump || k == expr.VerdictGoto) && v.Chain == "" {
		return fmt.Errorf("%s without a chain", v.Kind)
	}
	rc.add(&expr.Verdict{Kind: k, Chain: v.Chain})
	return nil
}

// fieldInfo says how a field is loaded into register 1.
type fieldInfo struct {
	load func() expr.Any
	// fam is the network protocol the field belongs to (a payload field
	// of the IPv4 or IPv6 header), 0 for the others.
	fam byte
	// size is the length of the field in bytes.
	size int
	// bitmask fields (ct state, ct status) are tested with a mask.
	bitmask bool
	// base and offset of a payload field, for shortened prefix loads.
	base   expr.PayloadBase
	offset uint32
	// settype is the data type of an anonymous set of values.
	settype nftables.SetDatatype
}

func payload(base expr.PayloadBase, off, n uint32) func() expr.Any {
	return func() expr.Any {
		return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: base, Offset: off, Len: n}
	}
}

func fields(f nft.Field) (fieldInfo, error) {
	switch f {
	case nft.NFProto:
		return fieldInfo{load: meta(expr.MetaKeyNFPROTO), size: 1, settype: nftables.TypeNFProto}, nil
	case nft.L4Proto:
		return fieldInfo{load: meta(expr.MetaKeyL4PROTO), size: 1, settype: nftables.TypeInetProto}, nil
	case nft.THDport:
		return fieldInfo{load: payload(expr.PayloadBaseTransportHeader, 2, 2), size: 2, settype: nftables.TypeInetService}, nil
	case nft.UDPLength:
		return fieldInfo{load: payload(expr.PayloadBaseTransportHeader, 4, 2), size: 2, settype: nftables.TypeInteger}, nil
	case nft.Token:
		return fieldInfo{load: payload(expr.PayloadBaseTransportHeader, 8, 16), size: 16}, nil
	case nft.IPSaddr:
		return ipField(unix.NFPROTO_IPV4, 12, 4), nil
	case nft.IPDaddr:
		return ipField(unix.NFPROTO_IPV4, 16, 4), nil
	case nft.IP6Saddr:
		return ipField(unix.NFPROTO_IPV6, 8, 16), nil
	case nft.IP6Daddr:
		return ipField(unix.NFPROTO_IPV6, 24, 16), nil
	case nft.CtState:
		return fieldInfo{load: ct(expr.CtKeySTATE), size: 4, bitmask: true}, nil
	case nft.CtStatus:
		return fieldInfo{load: ct(expr.CtKeySTATUS), size: 4, bitmask: true}, nil
	case nft.CtOrigDport:
		return fieldInfo{load: ct(expr.CtKeyPROTODST), size: 2, settype: nftables.TypeInetService}, nil
	case nft.CtOrigIPDaddr:
		// NFT_CT_DST_IP needs a direction, which google/nftables only
		// sends for the older keys: PatchMessage adds it to the message.
		return fieldInfo{load: ct(expr.CtKey(unix.NFT_CT_DST_IP)), size: 4, settype: nftables.TypeIPAddr}, nil
	case nft.FibDaddrType:
		// nft --debug=netlink of `fib daddr type local`:
		// [ fib daddr type => reg 1 ] [ cmp eq reg 1 0x00000002 ].
		return fieldInfo{load: fibDaddrType, size: 4, settype: nftables.TypeFIBAddr}, nil
	}
	return fieldInfo{}, fmt.Errorf("field %q", f)
}

func ipField(fam byte, off uint32, n int) fieldInfo {
	t := nftables.TypeIPAddr
	if fam == unix.NFPROTO_IPV6 {
		t = nftables.TypeIP6Addr
	}
	return fieldInfo{
		load: payload(expr.PayloadBaseNetworkHeader, off, uint32(n)),
		fam:  fam, size: n, base: expr.PayloadBaseNetworkHeader, offset: off, settype: t,
	}
}

func fibDaddrType() expr.Any {
	return &expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true}
}

// rtnTypes are the route types `fib ... type` yields, by nft's names
// (include/uapi/linux/rtnetlink.h: RTN_UNICAST, RTN_LOCAL, ...); the
// register holds the type as a 32-bit word in host byte order
// (net/netfilter/nft_fib.c, nft_fib_store_result: *dreg = ... ).
var rtnTypes = map[string]uint32{
	"unspec": unix.RTN_UNSPEC, "unicast": unix.RTN_UNICAST, "local": unix.RTN_LOCAL,
	"broadcast": unix.RTN_BROADCAST, "anycast": unix.RTN_ANYCAST, "multicast": unix.RTN_MULTICAST,
	"blackhole": unix.RTN_BLACKHOLE, "unreachable": unix.RTN_UNREACHABLE, "prohibit": unix.RTN_PROHIBIT,
}

func meta(k expr.MetaKey) func() expr.Any {
	return func() expr.Any { return &expr.Meta{Key: k, Register: 1} }
}

func ct(k expr.CtKey) func() expr.Any {
	return func() expr.Any { return &expr.Ct{Key: k, Register: 1, Direction: ctDirOriginal} }
}

// depend inserts nft's implicit `meta nfproto` test before a read of an
// IPv4 or IPv6 header field, unless the rule already established that
// protocol (nft, src/payload.c: payload_gen_dependency in an inet table).
func (rc *ruleConv) depend(fam byte) {
	if fam == 0 || rc.fam == fam {
		return
	}
	rc.add(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}})
	rc.fam = fam
}

// dependL4 tests `meta l4proto PROTO` unless the rule already did, before
// a field of that protocol's header or payload (nft, src/payload.c:
// payload_gen_dependency).
func (rc *ruleConv) dependL4(proto byte) {
	if rc.l4 == proto {
		return
	}
	rc.add(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}})
	rc.l4 = proto
}

// tcpFlags tests the flags byte of the TCP header as nft does for
// `tcp flags & MASK == VALUE`: [ payload load 1b @ transport header + 13 ]
// [ bitwise reg 1 = ( reg 1 & MASK ) ^ 0 ] [ cmp eq reg 1 VALUE ], after
// the dependency `meta l4proto tcp` unless the rule already tested it
// (nft, src/payload.c: payload_gen_dependency).
func (rc *ruleConv) tcpFlags(f *nft.TCPFlags) {
	rc.dependL4(unix.IPPROTO_TCP)
	op := expr.CmpOpEq
	if f.Neg {
		op = expr.CmpOpNeq
	}
	rc.add(&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{f.Mask}, Xor: []byte{0}},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{f.Value}})
}

// key loads a set key (an address, masked to its prefix) into register 1.
func (rc *ruleConv) key(k nft.Key) error {
	fi, err := fields(k.Field)
	if err != nil {
		return err
	}
	if k.Field == nft.CtState && k.Prefix == 0 {
		rc.add(fi.load())
		return nil
	}
	if k.Field == nft.Token && k.Prefix == 0 {
		// A UDP payload's bytes: of a UDP datagram only, as nft's raw
		// payload expression is not, so that a TCP segment's header is
		// never read as a token.
		rc.dependL4(unix.IPPROTO_UDP)
		rc.add(fi.load())
		return nil
	}
	if fi.fam == 0 {
		return fmt.Errorf("set key %q: kwl keys sets by address or by ct state", k.Field)
	}
	rc.depend(fi.fam)
	rc.add(fi.load())
	bits := fi.size * 8
	if k.Prefix > 0 && k.Prefix < bits {
		m := prefixMask(fi.size, k.Prefix)
		rc.add(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(fi.size), Mask: m, Xor: make([]byte, fi.size)})
	} else if k.Prefix < 0 || k.Prefix > bits {
		return fmt.Errorf("set key %s prefix /%d", k.Field, k.Prefix)
	}
	return nil
}

func prefixMask(size, bits int) []byte {
	m := make([]byte, size)
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func (rc *ruleConv) match(m *nft.Match) error {
	fi, err := fields(m.Field)
	if err != nil {
		return err
	}
	if len(m.Values) == 0 {
		return fmt.Errorf("%s: no values", m.Field)
	}
	if fi.bitmask {
		return rc.bitmaskMatch(m, fi)
	}
	if fi.fam != 0 || m.Field == nft.CtOrigIPDaddr {
		return rc.addrMatch(m, fi)
	}
	vals := make([][]byte, 0, len(m.Values))
	for _, v := range m.Values {
		b, err := scalar(m.Field, v)
		if err != nil {
			return err
		}
		vals = append(vals, b)
	}
	if m.Field == nft.UDPLength {
		rc.dependL4(unix.IPPROTO_UDP)
	}
	rc.add(fi.load())
	if len(vals) == 1 {
		op := expr.CmpOpEq
		if m.Neg {
			op = expr.CmpOpNeq
		}
		rc.add(&expr.Cmp{Op: op, Register: 1, Data: vals[0]})
		if m.Field == nft.NFProto && !m.Neg {
			rc.fam = vals[0][0]
		}
		if m.Field == nft.L4Proto && !m.Neg {
			rc.l4 = vals[0][0]
		}
		return nil
	}
	rc.lookupAnon(fi.settype, false, distinctElems(vals), m.Neg)
	return nil
}

// distinctElems returns the elements of an anonymous set of the keys
// vals, sorted, each once, as nft sends them.
func distinctElems(vals [][]byte) []nftables.SetElement {
	slices.SortFunc(vals, bytes.Compare)
	vals = slices.CompactFunc(vals, bytes.Equal)
	elems := make([]nftables.SetElement, len(vals))
	for i, v := range vals {
		elems[i] = nftables.SetElement{Key: v}
	}
	return elems
}

func (rc *ruleConv) lookupAnon(t nftables.SetDatatype, interval bool, elems []nftables.SetElement, neg bool) {
	s := &nftables.Set{
		Table:     rc.c.n.Table,
		ID:        rc.c.id(),
		Name:      "__set%d",
		Anonymous: true,
		Constant:  true,
		Interval:  interval,
		KeyType:   t,
	}
	rc.anon = append(rc.anon, AnonSet{Set: s, Elems: elems})
	rc.add(&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: neg})
}

// scalar encodes one value of a non-address field as the register holds it.
func scalar(f nft.Field, v any) ([]byte, error) {
	switch f {
	case nft.NFProto:
		switch v {
		case "ipv4":
			return []byte{unix.NFPROTO_IPV4}, nil
		case "ipv6":
			return []byte{unix.NFPROTO_IPV6}, nil
		}
	case nft.L4Proto:
		switch p := v.(type) {
		case lang.Proto:
			return []byte{byte(p)}, nil
		case string:
			switch p {
			case "tcp":
				return []byte{unix.IPPROTO_TCP}, nil
			case "udp":
				return []byte{unix.IPPROTO_UDP}, nil
			case "icmp":
				return []byte{unix.IPPROTO_ICMP}, nil
			}
		}
	case nft.FibDaddrType:
		if s, ok := v.(string); ok {
			if t, ok := rtnTypes[s]; ok {
				return binaryutil.NativeEndian.PutUint32(t), nil
			}
		}
	case nft.THDport, nft.CtOrigDport, nft.UDPLength:
		switch p := v.(type) {
		case uint16:
			return binaryutil.BigEndian.PutUint16(p), nil
		case int:
			if p >= 0 && p <= 65535 {
				return binaryutil.BigEndian.PutUint16(uint16(p)), nil
			}
		}
	}
	return nil, fmt.Errorf("%s: value %v (%T)", f, v, v)
}

// ctBits are the conntrack state and status bits kwl names
// (include/uapi/linux/netfilter/nf_conntrack_common.h: NF_CT_STATE_BIT,
// IPS_DST_NAT).
var ctBits = map[nft.Field]map[string]uint32{
	nft.CtState: {
		"invalid":     1,
		"established": 1 << (1 + 0), // NF_CT_STATE_BIT(IP_CT_ESTABLISHED)
		"related":     1 << (1 + 1),
		"new":         1 << (1 + 2),
		"untracked":   1 << 6,
	},
	nft.CtStatus: {
		"expected":   1 << 0,
		"seen-reply": 1 << 1,
		"assured":    1 << 2,
		"confirmed":  1 << 3,
		"snat":       1 << 4,
		"dnat":       1 << 5,
		"dying":      1 << 9,
	},
}

// bitmaskMatch tests ct state / ct status as nft does: `ct state new` and
// `ct state established,related` mask the register and test for non-zero;
// `ct state != new` compares the whole word.
func (rc *ruleConv) bitmaskMatch(m *nft.Match, fi fieldInfo) error {
	var mask uint32
	for _, v := range m.Values {
		s, _ := v.(string)
		b, ok := ctBits[m.Field][s]
		if !ok {
			return fmt.Errorf("%s: value %v", m.Field, v)
		}
		mask |= b
	}
	zero := make([]byte, 4)
	rc.add(fi.load())
	if m.Neg && len(m.Values) == 1 {
		rc.add(&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(mask)})
		return nil
	}
	op := expr.CmpOpNeq
	if m.Neg {
		op = expr.CmpOpEq
	}
	rc.add(&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: zero},
		&expr.Cmp{Op: op, Register: 1, Data: zero})
	return nil
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4In6() {
		a = a.Unmap()
	}
	return a.AsSlice()
}

func toPrefix(v any) (netip.Prefix, error) {
	switch p := v.(type) {
	case netip.Prefix:
		return p.Masked(), nil
	case netip.Addr:
		return netip.PrefixFrom(p, p.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("address value %v (%T)", v, v)
}

// addrMatch tests an address field against prefixes. One prefix is a
// comparison (nft loads only the whole bytes of a byte-aligned prefix, and
// masks the others); several are an anonymous set, an interval set when
// any of them is not a single address.
func (rc *ruleConv) addrMatch(m *nft.Match, fi fieldInfo) error {
	ps := make([]netip.Prefix, 0, len(m.Values))
	for _, v := range m.Values {
		p, err := toPrefix(v)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Field, err)
		}
		if p.Addr().BitLen() != fi.size*8 {
			return fmt.Errorf("%s: %v is not an IPv%d address", m.Field, p, map[int]int{4: 4, 16: 6}[fi.size])
		}
		ps = append(ps, p)
	}
	rc.depend(fi.fam)
	op := expr.CmpOpEq
	if m.Neg {
		op = expr.CmpOpNeq
	}
	if len(ps) == 1 {
		p := ps[0]
		bits := p.Bits()
		addr := addrBytes(p.Addr())
		switch {
		case bits == fi.size*8 || fi.fam == 0:
			rc.add(fi.load(), &expr.Cmp{Op: op, Register: 1, Data: addr})
		case bits%8 == 0:
			if bits == 0 {
				// nft: a /0 prefix matches every address of the family;
				// only the dependency remains.
				return nil
			}
			rc.add(&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: fi.base, Offset: fi.offset, Len: uint32(bits / 8)},
				&expr.Cmp{Op: op, Register: 1, Data: addr[:bits/8]})
		default:
			rc.add(fi.load(),
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(fi.size), Mask: prefixMask(fi.size, bits), Xor: make([]byte, fi.size)},
				&expr.Cmp{Op: op, Register: 1, Data: addr})
		}
		return nil
	}
	rc.add(fi.load())
	interval := false
	for _, p := range ps {
		if p.Bits() < fi.size*8 {
			interval = true
		}
	}
	if !interval {
		vals := make([][]byte, len(ps))
		for i, p := range ps {
			vals[i] = addrBytes(p.Addr())
		}
		rc.lookupAnon(fi.settype, false, distinctElems(vals), m.Neg)
		return nil
	}
	rc.lookupAnon(fi.settype, true, intervalElems(ps, fi.size), m.Neg)
	return nil
}

// intervalElems encodes prefixes as the elements of an interval set the
// way nft sends them: ranges sorted and merged, each a start element and
// an end element (flag interval end) holding the first address after the
// range, with a leading end element at the zero address when the first
// range does not start there, and no end after a range reaching the last
// address.
func intervalElems(ps []netip.Prefix, size int) []nftables.SetElement {
	type rng struct{ lo, hi []byte } // hi exclusive; nil: past the last address
	rs := make([]rng, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		lo := addrBytes(p.Addr())
		r := rng{lo: lo}
		if next := lastAddr(p).Next(); next.IsValid() {
			r.hi = addrBytes(next)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b rng) int { return bytes.Compare(a.lo, b.lo) })
	merged := rs[:0:0]
	for _, r := range rs {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if last.hi == nil {
				continue
			}
			if bytes.Compare(r.lo, last.hi) <= 0 {
				if r.hi == nil || bytes.Compare(r.hi, last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		merged = append(merged, r)
	}
	var elems []nftables.SetElement
	zero := make([]byte, size)
	if bytes.Compare(merged[0].lo, zero) != 0 {
		elems = append(elems, nftables.SetElement{Key: zero, IntervalEnd: true})
	}
	for _, r := range merged {
		elems = append(elems, nftables.SetElement{Key: r.lo})
		if r.hi != nil {
			elems = append(elems, nftables.SetElement{Key: r.hi, IntervalEnd: true})
		}
	}
	return elems
}

// lastAddr is the last address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// nftDynsetOpDelete is NFT_DYNSET_OP_DELETE (include/uapi/linux/netfilter/
// nf_tables.h), which golang.org/x/sys/unix does not define.
const nftDynsetOpDelete = 2
