package sim

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim/capture"
)

// This file executes an *nft.Ruleset the way nf_tables does
// (net/netfilter/nf_tables_core.c, nft_do_chain): base chains of a hook in
// priority order, rules expression by expression (the first expression
// that does not match ends the rule, NFT_BREAK), verdicts with a jump
// stack. The stateful expressions copy the kernel:
//
//   - dynamic sets (nft_dynset.c, nft_set_hash.c): add and update create
//     a missing element unless the set holds size elements, in which case
//     nothing is created and the expression does not match; update
//     refreshes the expiration of an existing element, add never does;
//     delete removes it and always matches. An element is expired when
//     now >= expiration (jiffies); lookups skip it, but it still counts
//     toward size until the set's garbage collection, which runs every
//     second (gc-interval default, nft_set_gc_interval) and which the model
//     runs at every whole second of simulated time.
//   - timeouts are stored in jiffies: nf_msecs_to_jiffies64 rounds the
//     milliseconds down to whole jiffies (4 ms at HZ=250), at least 1.
//   - limit (nft_limit.c): a token bucket in nanoseconds, cost =
//     unit/rate, bucket = cost*burst (burst 0 means 5), created full; a
//     packet that finds enough tokens takes them, one that does not takes
//     none; over inverts the match. An element of a set gets its own full
//     bucket when it is created (nft_limit_clone), and the element's bucket
//     runs on every add/update that finds or creates it
//     (nft_set_elem_update_expr).

// nftDefaultBurst is nft_limit's default burst (NFT_LIMIT_PKT_BURST_DEFAULT).
const nftDefaultBurst = 5

// nftGCInterval is the default gc-interval of a set with timeouts.
const nftGCInterval = time.Second

type nfield uint8

const (
	fNFProto nfield = iota
	fL4Proto
	fTHDport
	fIPSaddr
	fIPDaddr
	fIP6Saddr
	fIP6Daddr
	fCtState
	fCtStatus
	fCtOrigDport
	fCtOrigIPDaddr
	fFibDaddrType
	fUDPLength
	fToken    // a UDP payload's first 16 bytes, keyed as an IPv6 address
	fTCPFlags // nft.TCPFlags: bits is the value, mask the mask
)

var nfields = map[nft.Field]nfield{
	nft.NFProto: fNFProto, nft.L4Proto: fL4Proto, nft.THDport: fTHDport,
	nft.IPSaddr: fIPSaddr, nft.IPDaddr: fIPDaddr, nft.IP6Saddr: fIP6Saddr, nft.IP6Daddr: fIP6Daddr,
	nft.CtState: fCtState, nft.CtStatus: fCtStatus, nft.CtOrigDport: fCtOrigDport,
	nft.CtOrigIPDaddr: fCtOrigIPDaddr, nft.FibDaddrType: fFibDaddrType,
	nft.UDPLength: fUDPLength, nft.Token: fToken,
}

// Bits of the symbolic match values.
const (
	bitIPv4  = 1 << 0
	bitIPv6  = 1 << 1
	bitDNAT  = 1 << 0
	bitLocal = 1 << 0
)

type nexprKind uint8

const (
	exMatch nexprKind = iota
	exLookup
	exDynset
	exLimit
	exConnlimit
	exLog
	exCounter
	exNAT
	exVerdict
)

type vkind uint8

const (
	vNone vkind = iota // no verdict: next rule
	vAccept
	vDrop
	vReject
	vJump
	vGoto
	vReturn
	vContinue
)

// nlimit is a token bucket's parameters.
type nlimit struct {
	cost, max uint64 // nanoseconds' worth of tokens
	over      bool
	desc      string // "3/minute burst 3"
}

// bucket is a token bucket's state.
type bucket struct {
	tokens uint64
	last   time.Duration
}

// take runs nft_limit_eval: it reports whether the packet found enough
// tokens (and took them).
func (b *bucket) take(l *nlimit, now time.Duration) bool {
	tokens := b.tokens
	if now > b.last {
		tokens += uint64(now - b.last)
	}
	if tokens > l.max {
		tokens = l.max
	}
	if now > b.last {
		b.last = now
	}
	if tokens >= l.cost {
		b.tokens = tokens - l.cost
		return true
	}
	// Not enough: nothing is taken (the accrued tokens are kept).
	b.tokens = tokens
	return false
}

type nkey struct {
	field  nfield // fIPSaddr, fIP6Saddr, fIPDaddr, fIP6Daddr, or fCtState
	prefix int
}

type nexpr struct {
	kind  nexprKind
	field nfield
	neg   bool
	bits  uint8 // nfproto, ct state, ct status, fib type; the value of tcp flags
	mask  uint8 // tcp flags
	// values
	protos   []lang.Proto
	ports    []uint16
	prefixes []netip.Prefix
	// sets
	set     int
	key     nkey
	op      nft.DynOp
	timeout int64 // jiffies, 0: the set's
	limit   *nlimit
	bucket  int // global limit: index in nftEngine.buckets
	// ct count: per element (Dynset) or the rule's own list (ccList, an
	// index in nftEngine.cc)
	cc      bool
	ccCount int
	ccOver  bool
	ccList  int
	// log
	logText string
	// nat
	natAddr netip.Addr
	natPort uint16
	// verdict
	verdict vkind
	target  int
}

type nrule struct {
	exprs   []nexpr
	origin  lang.Ref
	comment string
}

type nchain struct {
	name      string
	base      bool
	nat       bool
	hook      nft.Hook
	priority  int
	policy    vkind
	policyMsg string
	rules     []nrule
	disp      dispatch
}

// portGuard returns the ports a rule requires (see dispatch), or nil: the
// first dport match among the rule's leading pure matches.
func (r *nrule) portGuard() []uint16 {
	if ps := r.leadingPorts(fTHDport); ps != nil {
		return append([]uint16{}, ps...)
	}
	return nil
}

// leadingPorts returns the ports of the first match of field f (a port
// field, not negated) among the rule's leading pure matches, or nil.
func (r *nrule) leadingPorts(f nfield) []uint16 {
	for i := range r.exprs {
		ex := &r.exprs[i]
		if ex.kind != exMatch {
			return nil
		}
		if ex.field == f && !ex.neg {
			return ex.ports
		}
	}
	return nil
}

type nelem struct {
	key    netip.Addr
	hasExp bool
	exp    int64 // jiffies
	lim    *nlimit
	b      bucket
	cc     *ccList // the element's connections, for ct count
	gen    uint32  // bumped when the slot is freed or reused, to tell stale GC entries
	qexp   int64   // the expiration its live entry in the GC heap is keyed by
}

// gcEntry is an element waiting for the set's garbage collection, keyed
// by the expiration it had when queued (a refresh that moves it later
// leaves the entry as it is; the GC then queues it again).
type gcEntry struct {
	exp int64
	ix  int32
	gen uint32
}

type nset struct {
	name    string
	preload []nft.Element // loaded with the set, at time 0
	size    int
	timeout int64 // jiffies; 0: elements never expire unless the rule gives a timeout
	idx     addrIndex
	elems   []nelem
	free    []int32
	n       int // elements the kernel counts (nelems): live, expired but not collected, and shadowed
	shadow  int // expired elements replaced by a new one under the same key before GC
	// heap holds one entry per element with an expiration (min-heap on
	// exp), so that GC visits only the elements due instead of the whole
	// set every second.
	heap []gcEntry
}

type nftEngine struct {
	chains   []nchain
	pre      []int
	input    []int
	forward  []int
	sets     []nset
	limits   []*nlimit // global limit parameters, by bucket index
	buckets  []bucket
	ncc      int       // rules' own ct count lists
	cc       []*ccList // by ccList index
	lastGC   int64     // the last whole second GC ran at
	jumpBase [16]int
	tokens   []tokenSet // the sets of secret knocks' tokens
}

// tokenSet is a set whose elements a secret knock's secret derives.
type tokenSet struct {
	set int
	src *nft.TokenSource
}

// loadTokens makes each token set load, at its next reset, the tokens
// of the windows from clock to clock+horizon under the secrets keys.
func (e *nftEngine) loadTokens(clock time.Time, horizon time.Duration, keys map[string][]byte) {
	for _, ts := range e.tokens {
		from, to := ts.src.Windows(clock, horizon)
		e.sets[ts.set].preload = ts.src.Elements(keys[ts.src.Secret], clock, from, to)
	}
}

func compileNFT(rs *nft.Ruleset) (*nftEngine, error) {
	if rs == nil || rs.Table == nil {
		return nil, fmt.Errorf("nft ruleset has no table")
	}
	e := &nftEngine{}
	setIdx := map[string]int{}
	for _, s := range rs.Table.Sets {
		size := s.Size
		if size <= 0 {
			size = nft.DefaultSetSize // an unsized set bound to a dynset
		}
		setIdx[s.Name] = len(e.sets)
		if len(s.Elements) > size {
			return nil, fmt.Errorf("nft: set %s: %d elements for a size of %d", s.Name, len(s.Elements), size)
		}
		if s.Tokens != nil {
			e.tokens = append(e.tokens, tokenSet{set: len(e.sets), src: s.Tokens})
		}
		e.sets = append(e.sets, nset{name: s.Name, size: size, timeout: nftTimeout(s.Timeout), preload: s.Elements})
	}
	chainIdx := map[string]int{}
	for i, c := range rs.Table.Chains {
		if _, dup := chainIdx[c.Name]; dup {
			return nil, fmt.Errorf("nft: chain %s defined twice", c.Name)
		}
		chainIdx[c.Name] = i
	}
	for _, c := range rs.Table.Chains {
		nc := nchain{name: c.Name, base: c.Hook != "", nat: c.Type == "nat", hook: c.Hook, priority: c.Priority,
			policy: vAccept, policyMsg: "policy of chain " + c.Name}
		if c.Policy == nft.Drop {
			nc.policy = vDrop
		}
		for _, r := range c.Rules {
			nr := nrule{origin: r.Origin, comment: r.Comment}
			for _, x := range r.Exprs {
				ex, err := e.compileExpr(x, setIdx, chainIdx)
				if err != nil {
					return nil, fmt.Errorf("nft: chain %s: %v", c.Name, err)
				}
				nr.exprs = append(nr.exprs, ex)
			}
			nc.rules = append(nc.rules, nr)
		}
		guards := make([][]uint16, len(nc.rules))
		for i := range nc.rules {
			guards[i] = nc.rules[i].portGuard()
		}
		nc.disp.build(guards)
		e.chains = append(e.chains, nc)
	}
	for i, c := range e.chains {
		switch c.hook {
		case nft.Prerouting:
			e.pre = append(e.pre, i)
		case nft.Input:
			e.input = append(e.input, i)
		case nft.Forward:
			e.forward = append(e.forward, i)
		case "":
		default:
			return nil, fmt.Errorf("nft: chain %s: hook %s is not simulated", c.name, c.hook)
		}
	}
	for _, l := range [][]int{e.pre, e.input, e.forward} {
		sort.SliceStable(l, func(a, b int) bool { return e.chains[l[a]].priority < e.chains[l[b]].priority })
	}
	e.reset()
	return e, nil
}

// nftTimeout converts a timeout to jiffies as nf_msecs_to_jiffies64 does:
// whole milliseconds, rounded down to whole jiffies, at least one.
func nftTimeout(d time.Duration) int64 {
	ms := d.Milliseconds()
	if ms <= 0 {
		return 0
	}
	j := ms * HZ / 1000
	if j == 0 {
		j = 1
	}
	return j
}

func newNlimit(l *nft.Limit) (*nlimit, error) {
	if l.Rate == 0 {
		return nil, fmt.Errorf("limit rate 0")
	}
	if l.Unit <= 0 {
		return nil, fmt.Errorf("limit without a unit")
	}
	burst := uint64(l.Burst)
	if burst == 0 {
		burst = nftDefaultBurst
	}
	// The unit goes to the kernel in whole seconds (NFTA_LIMIT_UNIT).
	nsecs := uint64(l.Unit/time.Second) * uint64(time.Second)
	cost := nsecs / l.Rate
	return &nlimit{cost: cost, max: cost * burst, over: l.Over,
		desc: fmt.Sprintf("%d/%s burst %d", l.Rate, unitName(l.Unit), burst)}, nil
}

func unitName(u time.Duration) string {
	switch u {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	}
	return u.String()
}

func (e *nftEngine) compileExpr(x nft.Expr, sets, chains map[string]int) (nexpr, error) {
	switch x := x.(type) {
	case *nft.Match:
		f, ok := nfields[x.Field]
		if !ok {
			return nexpr{}, fmt.Errorf("field %q is not simulated", x.Field)
		}
		ex := nexpr{kind: exMatch, field: f, neg: x.Neg}
		for _, v := range x.Values {
			if err := ex.addValue(v); err != nil {
				return nexpr{}, fmt.Errorf("%s: %v", x.Field, err)
			}
		}
		return ex, nil
	case *nft.TCPFlags:
		return nexpr{kind: exMatch, field: fTCPFlags, neg: x.Neg, bits: x.Value, mask: x.Mask}, nil
	case *nft.Lookup:
		si, ok := sets[x.Set]
		if !ok {
			return nexpr{}, fmt.Errorf("lookup in unknown set @%s", x.Set)
		}
		k, err := compileKey(x.Key)
		if err != nil {
			return nexpr{}, err
		}
		return nexpr{kind: exLookup, set: si, key: k, neg: x.Neg}, nil
	case *nft.Dynset:
		si, ok := sets[x.Set]
		if !ok {
			return nexpr{}, fmt.Errorf("%s in unknown set @%s", x.Op, x.Set)
		}
		k, err := compileKey(x.Key)
		if err != nil {
			return nexpr{}, err
		}
		ex := nexpr{kind: exDynset, set: si, key: k, op: x.Op, timeout: nftTimeout(x.Timeout)}
		switch x.Op {
		case nft.Add, nft.Update, nft.Delete:
		default:
			return nexpr{}, fmt.Errorf("unknown set operation %q", x.Op)
		}
		if x.Limit != nil {
			if ex.limit, err = newNlimit(x.Limit); err != nil {
				return nexpr{}, err
			}
		}
		if x.Connlimit != nil {
			ex.cc, ex.ccCount, ex.ccOver = true, int(x.Connlimit.Count), x.Connlimit.Over
		}
		return ex, nil
	case *nft.Connlimit:
		e.ncc++
		return nexpr{kind: exConnlimit, cc: true, ccCount: int(x.Count), ccOver: x.Over, ccList: e.ncc - 1}, nil
	case *nft.Limit:
		l, err := newNlimit(x)
		if err != nil {
			return nexpr{}, err
		}
		e.limits = append(e.limits, l)
		return nexpr{kind: exLimit, limit: l, bucket: len(e.limits) - 1}, nil
	case *nft.Log:
		return nexpr{kind: exLog, logText: fmt.Sprintf("log %q level %s", x.Prefix, x.Level)}, nil
	case *nft.Counter:
		return nexpr{kind: exCounter}, nil
	case *nft.NAT:
		if !x.Addr.IsValid() {
			return nexpr{}, fmt.Errorf("dnat without an address")
		}
		return nexpr{kind: exNAT, natAddr: x.Addr.Unmap(), natPort: x.Port}, nil
	case *nft.Verdict:
		ex := nexpr{kind: exVerdict, target: -1}
		switch x.Kind {
		case nft.Accept:
			ex.verdict = vAccept
		case nft.Drop:
			ex.verdict = vDrop
		case nft.Reject, nft.RejectTCPReset:
			ex.verdict = vReject
		case nft.Return:
			ex.verdict = vReturn
		case nft.Continue:
			ex.verdict = vContinue
		case nft.Jump, nft.Goto:
			ex.verdict = vJump
			if x.Kind == nft.Goto {
				ex.verdict = vGoto
			}
			ci, ok := chains[x.Chain]
			if !ok {
				return nexpr{}, fmt.Errorf("%s to unknown chain %s", x.Kind, x.Chain)
			}
			ex.target = ci
		default:
			return nexpr{}, fmt.Errorf("unknown verdict %q", x.Kind)
		}
		return ex, nil
	case nil:
		return nexpr{}, fmt.Errorf("nil expression")
	}
	return nexpr{}, fmt.Errorf("expression %T is not simulated", x)
}

func compileKey(k nft.Key) (nkey, error) {
	f, ok := nfields[k.Field]
	if ok && (f == fCtState || f == fToken) && k.Prefix == 0 {
		return nkey{field: f}, nil
	}
	if !ok || (f != fIPSaddr && f != fIP6Saddr && f != fIPDaddr && f != fIP6Daddr) {
		return nkey{}, fmt.Errorf("set key %q is not an address", k.Field)
	}
	bits := 32
	if f == fIP6Saddr || f == fIP6Daddr {
		bits = 128
	}
	if k.Prefix < 0 || k.Prefix > bits {
		return nkey{}, fmt.Errorf("set key %s masked to /%d", k.Field, k.Prefix)
	}
	p := k.Prefix
	if p == 0 {
		p = bits
	}
	return nkey{field: f, prefix: p}, nil
}

func (ex *nexpr) addValue(v any) error {
	switch ex.field {
	case fNFProto:
		switch v {
		case "ipv4":
			ex.bits |= bitIPv4
		case "ipv6":
			ex.bits |= bitIPv6
		default:
			return fmt.Errorf("value %v", v)
		}
	case fL4Proto:
		switch p := v.(type) {
		case lang.Proto:
			ex.protos = append(ex.protos, p)
		case int:
			ex.protos = append(ex.protos, lang.Proto(p))
		case uint8:
			ex.protos = append(ex.protos, lang.Proto(p))
		case string:
			switch p {
			case "tcp":
				ex.protos = append(ex.protos, lang.TCP)
			case "udp":
				ex.protos = append(ex.protos, lang.UDP)
			case "icmp":
				ex.protos = append(ex.protos, lang.ICMP)
			case "ipv6-icmp", "icmpv6":
				ex.protos = append(ex.protos, 58)
			default:
				return fmt.Errorf("value %q", p)
			}
		default:
			return fmt.Errorf("value %v (%T)", v, v)
		}
	case fTHDport, fCtOrigDport, fUDPLength:
		switch p := v.(type) {
		case uint16:
			ex.ports = append(ex.ports, p)
		case int:
			if p < 0 || p > 65535 {
				return fmt.Errorf("port %d", p)
			}
			ex.ports = append(ex.ports, uint16(p))
		default:
			return fmt.Errorf("value %v (%T)", v, v)
		}
	case fIPSaddr, fIPDaddr, fIP6Saddr, fIP6Daddr, fCtOrigIPDaddr:
		switch p := v.(type) {
		case netip.Prefix:
			ex.prefixes = append(ex.prefixes, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked())
		case netip.Addr:
			a := p.Unmap()
			ex.prefixes = append(ex.prefixes, netip.PrefixFrom(a, a.BitLen()))
		default:
			return fmt.Errorf("value %v (%T)", v, v)
		}
	case fCtState:
		switch v {
		case "new":
			ex.bits |= stNew
		case "established":
			ex.bits |= stEstablished
		case "related":
			ex.bits |= stRelated
		case "invalid":
			ex.bits |= stInvalid
		case "untracked":
			ex.bits |= stUntracked
		default:
			return fmt.Errorf("value %v", v)
		}
	case fCtStatus:
		if v != "dnat" {
			return fmt.Errorf("value %v", v)
		}
		ex.bits |= bitDNAT
	case fFibDaddrType:
		if v != "local" {
			return fmt.Errorf("value %v", v)
		}
		ex.bits |= bitLocal
	}
	return nil
}

func (e *nftEngine) reset() {
	for i := range e.sets {
		st := &e.sets[i]
		st.idx.Clear()
		st.elems = st.elems[:0]
		st.free = st.free[:0]
		st.heap = st.heap[:0]
		st.n, st.shadow = 0, 0
		for _, el := range st.preload {
			timeout := st.timeout
			if el.Timeout > 0 {
				timeout = nftTimeout(el.Timeout)
			}
			st.create(netip.AddrFrom16(el.Key), 0, timeout, nil, 0, false)
		}
	}
	e.buckets = make([]bucket, len(e.limits))
	for i, l := range e.limits {
		// A rule's bucket is full when the rule is loaded (time 0).
		e.buckets[i] = bucket{tokens: l.max}
	}
	// A rule's list is created when the rule is loaded, before any
	// packet.
	e.cc = make([]*ccList, e.ncc)
	for i := range e.cc {
		e.cc[i] = newCCList(-1)
	}
	e.lastGC = 0
}

// addr returns the address a field reads, or false when the packet has
// no such field (an ip field on an IPv6 packet: nft's implicit
// dependency on the network protocol fails).
func fieldAddr(p *pkt, f nfield) (netip.Addr, bool) {
	switch f {
	case fIPSaddr:
		return p.src, !p.v6
	case fIP6Saddr:
		return p.src, p.v6
	case fIPDaddr:
		return p.dst, !p.v6
	case fIP6Daddr:
		return p.dst, p.v6
	case fCtOrigIPDaddr:
		if p.c == nil || p.v6 {
			return netip.Addr{}, false
		}
		return p.c.orig.dst, true
	}
	return netip.Addr{}, false
}

// keyOf computes a set key. A ct state key is held as the IPv4 address
// 0.0.0.STATE: sets keep keys as addresses, and a ct_state set holds no
// address.
func keyOf(p *pkt, k nkey) (netip.Addr, bool) {
	switch k.field {
	case fCtState:
		return netip.AddrFrom4([4]byte{3: p.state}), true
	case fToken:
		// The load of 16 bytes past the UDP header fails on a shorter
		// datagram (nft_payload: the rule breaks). A capture that cut the
		// payload short is taken the same way: its bytes are not known.
		if p.proto != lang.UDP || p.pk.PayloadN < capture.PayloadSize {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(p.pk.Payload), true
	}
	a, ok := fieldAddr(p, k.field)
	if !ok {
		return a, false
	}
	if k.prefix < a.BitLen() {
		pf, _ := a.Prefix(k.prefix)
		a = pf.Addr()
	}
	return a, true
}

// match evaluates a Match: present is false when the packet lacks the field.
func (ex *nexpr) match(s *Sim, p *pkt) bool {
	var hit bool
	switch ex.field {
	case fNFProto:
		b := uint8(bitIPv4)
		if p.v6 {
			b = bitIPv6
		}
		hit = ex.bits&b != 0
	case fL4Proto:
		for _, pr := range ex.protos {
			if pr == p.proto {
				hit = true
				break
			}
		}
	case fTHDport:
		if p.proto != lang.TCP && p.proto != lang.UDP {
			return false
		}
		hit = hasPort(ex.ports, p.dport)
	case fCtOrigDport:
		if p.c == nil {
			return false
		}
		hit = hasPort(ex.ports, p.c.orig.dport)
	case fUDPLength:
		if p.proto != lang.UDP {
			return false
		}
		hit = hasPort(ex.ports, p.pk.UDPLen)
	case fIPSaddr, fIPDaddr, fIP6Saddr, fIP6Daddr, fCtOrigIPDaddr:
		a, ok := fieldAddr(p, ex.field)
		if !ok {
			return false
		}
		for _, pf := range ex.prefixes {
			if pf.Contains(a) {
				hit = true
				break
			}
		}
	case fCtState:
		hit = ex.bits&p.state != 0
	case fCtStatus:
		if p.c == nil {
			return false
		}
		hit = p.dnat || p.c.dnat
	case fFibDaddrType:
		hit = s.isLocal(p.dst, p.dnat)
	case fTCPFlags:
		// nft's dependency (meta l4proto tcp): no match either way for
		// other protocols.
		if p.proto != lang.TCP {
			return false
		}
		hit = uint8(p.flags)&ex.mask == ex.bits
	}
	return hit != ex.neg
}

func hasPort(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

func (e *nftEngine) gc(s *Sim, now time.Duration) {
	sec := int64(now / nftGCInterval)
	if sec <= e.lastGC {
		return
	}
	e.lastGC = sec
	tick := jiffies(time.Duration(sec) * nftGCInterval)
	for i := range e.sets {
		st := &e.sets[i]
		if st.shadow == 0 && (len(st.heap) == 0 || tick < st.heap[0].exp) {
			continue
		}
		for len(st.heap) > 0 && tick >= st.heap[0].exp {
			g := st.popGC()
			el := &st.elems[g.ix]
			if el.gen != g.gen || el.qexp != g.exp {
				continue // freed, reused, or queued again since
			}
			if tick >= el.exp {
				if s.opts.Explain {
					s.note("%s: %s collected (expired at %s)", st.name, el.key, fmtJiffies(el.exp))
				}
				st.idx.Delete(keyOfAddr(el.key))
				st.release(g.ix)
				st.n--
				continue
			}
			st.queueGC(g.ix) // refreshed since it was queued
		}
		st.n -= st.shadow
		st.shadow = 0
	}
}

// release frees an element's slot.
func (st *nset) release(ix int32) {
	st.elems[ix].gen++
	st.free = append(st.free, ix)
}

// queueGC puts an element with an expiration in the GC heap.
func (st *nset) queueGC(ix int32) {
	el := &st.elems[ix]
	el.qexp = el.exp
	h := append(st.heap, gcEntry{exp: el.exp, ix: ix, gen: el.gen})
	for i := len(h) - 1; i > 0; {
		up := (i - 1) / 2
		if h[up].exp <= h[i].exp {
			break
		}
		h[up], h[i] = h[i], h[up]
		i = up
	}
	st.heap = h
}

func (st *nset) popGC() gcEntry {
	h := st.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h[r].exp < h[l].exp {
			m = r
		}
		if h[i].exp <= h[m].exp {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	st.heap = h
	return top
}

// lookup returns the live element for key, or -1; expired is set when an
// element is there but has expired (nft_rhash_cmp skips it).
func (st *nset) lookup(key netip.Addr, j int64) (ix int32, expired bool) {
	ix = st.idx.get(keyOfAddr(key))
	if ix < 0 {
		return -1, false
	}
	el := &st.elems[ix]
	if el.hasExp && j >= el.exp {
		return -1, true
	}
	return ix, false
}

func (st *nset) create(key netip.Addr, j, timeout int64, lim *nlimit, now time.Duration, replacing bool) int32 {
	var ix int32
	if replacing {
		// The expired element stays in the table, counted, until GC;
		// the new one takes its key in the model.
		ix = st.idx.get(keyOfAddr(key))
		st.elems[ix].gen++ // the expired element's GC entry goes stale
		st.shadow++
	} else if n := len(st.free); n > 0 {
		ix = st.free[n-1]
		st.free = st.free[:n-1]
	} else {
		st.elems = append(st.elems, nelem{})
		ix = int32(len(st.elems) - 1)
	}
	el := &st.elems[ix]
	*el = nelem{key: key, gen: el.gen}
	if timeout > 0 {
		el.hasExp, el.exp = true, j+timeout
		st.queueGC(ix)
	}
	if lim != nil {
		el.lim = lim
		el.b = bucket{tokens: lim.max, last: now}
	}
	if !replacing {
		st.idx.put(keyOfAddr(key), ix)
	}
	st.n++
	return ix
}

func (e *nftEngine) evalDynset(s *Sim, p *pkt, ex *nexpr) bool {
	key, ok := keyOf(p, ex.key)
	if !ok {
		return false
	}
	st := &e.sets[ex.set]
	ix, expired := st.lookup(key, p.j)
	if ex.op == nft.Delete {
		if ix >= 0 {
			st.idx.Delete(keyOfAddr(key))
			st.release(ix)
			st.n--
			if s.opts.Explain {
				s.note("%s: deleted %s", st.name, key)
			}
		} else if s.opts.Explain {
			s.note("%s: delete %s: not in the set", st.name, key)
		}
		return true
	}
	timeout := ex.timeout
	if timeout == 0 {
		timeout = st.timeout
	}
	if ix < 0 {
		if st.n >= st.size {
			if s.opts.Explain {
				s.note("%s: full (%d elements), %s not added: no match", st.name, st.n, key)
			}
			return false
		}
		ix = st.create(key, p.j, timeout, ex.limit, p.now, expired)
		if ex.cc {
			st.elems[ix].cc = newCCList(p.j)
		}
		if s.opts.Explain {
			if el := &st.elems[ix]; el.hasExp {
				s.note("%s: added %s, expires at %s", st.name, key, fmtJiffies(el.exp))
			} else {
				s.note("%s: added %s, never expires", st.name, key)
			}
		}
	} else {
		el := &st.elems[ix]
		if ex.op == nft.Update && el.hasExp {
			el.exp = p.j + timeout
			if el.exp < el.qexp {
				// Sooner than its GC entry says: queue it again (the
				// old entry goes stale).
				st.queueGC(ix)
			}
			if s.opts.Explain {
				s.note("%s: refreshed %s, expires at %s", st.name, key, fmtJiffies(el.exp))
			}
		} else if s.opts.Explain {
			s.note("%s: %s already in, not refreshed (%s)", st.name, key, ex.op)
		}
	}
	el := &st.elems[ix]
	if ex.cc && el.cc != nil {
		return ex.count(s, p, el.cc, fmt.Sprintf("%s %s: ", st.name, key))
	}
	if el.lim != nil {
		took := el.b.take(el.lim, p.now)
		if s.opts.Explain {
			if took {
				s.note("%s %s: limit %s: token taken", st.name, key, el.lim.desc)
			} else {
				s.note("%s %s: limit %s: bucket empty", st.name, key, el.lim.desc)
			}
		}
		return took != el.lim.over
	}
	return true
}

// count adds the packet's connection to a ct count list and reports
// whether the expression matches: at most ccCount connections, the
// packet's included (more, with over).
func (ex *nexpr) count(s *Sim, p *pkt, l *ccList, what string) bool {
	n := l.add(&s.ct, p)
	match := (n <= ex.ccCount) != ex.ccOver
	if s.opts.Explain {
		s.note("%sct count: %d connections of at most %d", what, n, ex.ccCount)
	}
	return match
}

// evalRule runs a rule's expressions and returns its verdict (vNone when
// an expression did not match or the rule has no verdict).
func (e *nftEngine) evalRule(s *Sim, p *pkt, r *nrule) (vkind, int) {
	for i := range r.exprs {
		ex := &r.exprs[i]
		switch ex.kind {
		case exMatch:
			if !ex.match(s, p) {
				return vNone, 0
			}
		case exLookup:
			key, ok := keyOf(p, ex.key)
			if !ok {
				return vNone, 0
			}
			st := &e.sets[ex.set]
			ix, expired := st.lookup(key, p.j)
			if s.opts.Explain {
				switch {
				case ix >= 0 && st.elems[ix].hasExp:
					s.note("%s: %s is in (expires at %s)", st.name, key, fmtJiffies(st.elems[ix].exp))
				case ix >= 0:
					s.note("%s: %s is in", st.name, key)
				case expired:
					s.note("%s: %s expired at %s", st.name, key, fmtJiffies(st.elems[st.idx.get(keyOfAddr(key))].exp))
				default:
					s.note("%s: %s is not in", st.name, key)
				}
			}
			if (ix >= 0) == ex.neg {
				return vNone, 0
			}
		case exDynset:
			if !e.evalDynset(s, p, ex) {
				return vNone, 0
			}
		case exLimit:
			took := e.buckets[ex.bucket].take(ex.limit, p.now)
			if s.opts.Explain {
				if took {
					s.note("limit %s: token taken", ex.limit.desc)
				} else {
					s.note("limit %s: bucket empty", ex.limit.desc)
				}
			}
			if took == ex.limit.over {
				return vNone, 0
			}
		case exConnlimit:
			if !ex.count(s, p, e.cc[ex.ccList], "") {
				return vNone, 0
			}
		case exLog:
			if s.opts.Explain {
				s.note("%s", ex.logText)
			}
		case exCounter:
		case exNAT:
			p.dst = ex.natAddr
			if ex.natPort != 0 {
				p.dport = ex.natPort
			}
			p.dnat = true
			if s.opts.Explain {
				s.note("dnat to %s", netip.AddrPortFrom(p.dst, p.dport))
			}
			// nft_nat_eval: the verdict of a nat expression is accept.
			return vAccept, 0
		case exVerdict:
			return ex.verdict, ex.target
		}
	}
	return vNone, 0
}

// runChain runs a base chain with its jumps and returns accept, drop or
// reject, recording the deciding rule.
func (e *nftEngine) runChain(s *Sim, p *pkt, base int) vkind {
	var stack [16]jumpFrame // NFT_JUMP_STACK_SIZE
	sp := 0
	ci, ri := base, 0
	// order lists the rules of the chain the packet can match (nil: all);
	// ri counts along it. The packet's port does not change inside a
	// chain (a dnat ends it), so the choice made on entry holds.
	order := e.chains[ci].disp.pick(p)
	for {
		c := &e.chains[ci]
		n := len(c.rules)
		if order != nil {
			n = len(order)
		}
		if ri >= n {
			if sp == 0 {
				s.decide(c.policyMsg)
				return c.policy
			}
			sp--
			ci, ri, order = int(stack[sp].chain), int(stack[sp].rule), nil
			if !stack[sp].all {
				order = e.chains[ci].disp.rest
			}
			continue
		}
		r := &c.rules[ri]
		if order != nil {
			r = &c.rules[order[ri]]
		}
		ri++
		v, target := e.evalRule(s, p, r)
		switch v {
		case vNone, vContinue:
		case vAccept, vDrop, vReject:
			s.decideRule(r.origin, r.comment)
			return v
		case vJump:
			if sp == len(stack) {
				s.decideRule(r.origin, "jump stack overflow")
				return vDrop
			}
			next := e.chains[target].disp.pick(p)
			if next != nil && len(next) == 0 {
				// The packet can match none of the target's rules:
				// the jump returns at once.
				break
			}
			stack[sp] = jumpFrame{int32(ci), int32(ri), order == nil}
			sp++
			ci, ri, order = target, 0, next
		case vGoto:
			ci, ri = target, 0
			order = e.chains[ci].disp.pick(p)
		case vReturn:
			if sp == 0 {
				s.decide(c.policyMsg)
				return e.chains[base].policy
			}
			sp--
			ci, ri, order = int(stack[sp].chain), int(stack[sp].rule), nil
			if !stack[sp].all {
				order = e.chains[ci].disp.rest
			}
		}
	}
}

func (e *nftEngine) runHook(s *Sim, p *pkt, chains []int, natToo bool) lang.Verdict {
	for _, ci := range chains {
		if e.chains[ci].nat && !natToo {
			continue
		}
		switch e.runChain(s, p, ci) {
		case vDrop:
			return lang.Drop
		case vReject:
			return lang.Reject
		}
	}
	return lang.Accept
}

func (e *nftEngine) prerouting(s *Sim, p *pkt) (lang.Verdict, bool) {
	if len(e.pre) == 0 {
		return lang.Accept, false
	}
	// nat chains see only the first packet of a flow (nf_nat_inet_fn:
	// later packets use the binding made then).
	v := e.runHook(s, p, e.pre, p.fresh)
	if v != lang.Accept {
		return v, true
	}
	s.res.Rule, s.res.Comment = lang.Ref{}, ""
	return v, false
}

func (e *nftEngine) filter(s *Sim, p *pkt, h Hook) lang.Verdict {
	chains := e.input
	if h == HookForward {
		chains = e.forward
	}
	if len(chains) == 0 {
		s.decide("no chain on this hook")
		return lang.Accept
	}
	return e.runHook(s, p, chains, false)
}
