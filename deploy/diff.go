//go:build linux

package deploy

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy/nftnl"
)

// Diff is what changes between the live table and a new ruleset: sets,
// chains and rules added (+), removed (-) or changed (~).
type Diff struct {
	Table  string
	Exists bool // the table is loaded now
	Sets   []Change
	Chains []Change
	Rules  []Change
	Same   int // rules present in both
}

// Change is one line of a Diff.
type Change struct {
	Op     byte // '+', '-' or '~'
	What   string
	Detail string
}

// Empty reports whether nothing would change.
func (d *Diff) Empty() bool { return len(d.Sets)+len(d.Chains)+len(d.Rules) == 0 }

// Pending reports whether a deploy would change the kernel: the table
// is not loaded, or differs.
func (d *Diff) Pending() bool { return !d.Exists || !d.Empty() }

// Write prints the diff for people.
func (d *Diff) Write(w io.Writer) {
	if !d.Exists {
		fmt.Fprintf(w, "table %s is not loaded: it would be created\n", d.Table)
	}
	for _, cs := range [][]Change{d.Sets, d.Chains, d.Rules} {
		for _, c := range cs {
			if c.Detail != "" {
				fmt.Fprintf(w, "%c %s: %s\n", c.Op, c.What, c.Detail)
			} else {
				fmt.Fprintf(w, "%c %s\n", c.Op, c.What)
			}
		}
	}
	if !d.Pending() {
		fmt.Fprintf(w, "no changes: table %s is loaded as the policy says (%d rules)\n", d.Table, d.Same)
		return
	}
	var add, del, chg int
	for _, cs := range [][]Change{d.Sets, d.Chains, d.Rules} {
		for _, c := range cs {
			switch c.Op {
			case '+':
				add++
			case '-':
				del++
			default:
				chg++
			}
		}
	}
	fmt.Fprintf(w, "plan: %d to add, %d to change, %d to remove; %d rules unchanged\n", add, chg, del, d.Same)
}

var typeNames = map[uint32]string{7: "ipv4_addr", 8: "ipv6_addr", 12: "inet_proto", 13: "inet_service", 2: "nf_proto"}

// setDesc describes a set for a diff. A token set's comment is compared
// without the windows it was loaded through (splitTokenComment), which
// every renewal moves on.
func setDesc(keyType uint32, timeout time.Duration, size uint32, comment string) string {
	comment, _, _, _ = splitTokenComment(comment)
	tn := typeNames[keyType]
	if tn == "" {
		tn = fmt.Sprintf("type %d", keyType)
	}
	if size == 0 {
		size = nft.DefaultSetSize
	}
	s := fmt.Sprintf("%s, size %d", tn, size)
	if timeout > 0 {
		s += ", timeout " + timeout.String()
	}
	if comment != "" {
		s += fmt.Sprintf(", comment %q", comment)
	}
	return s
}

type chainInfo struct {
	name, desc string
}

func liveChain(m netlink.Message) chainInfo {
	attrs, _ := netlink.UnmarshalAttributes(m.Data[4:])
	var ci chainInfo
	var hook, prio int64 = -1, 0
	var typ string
	policy := ""
	for _, a := range attrs {
		switch a.Type &^ unix.NLA_F_NESTED {
		case unix.NFTA_CHAIN_NAME:
			ci.name = attrString(a.Data)
		case unix.NFTA_CHAIN_TYPE:
			typ = attrString(a.Data)
		case unix.NFTA_CHAIN_POLICY:
			policy = map[uint32]string{0: "drop", 1: "accept"}[be32(a.Data)]
		case unix.NFTA_CHAIN_HOOK:
			in, _ := netlink.UnmarshalAttributes(a.Data)
			for _, h := range in {
				switch h.Type {
				case unix.NFTA_HOOK_HOOKNUM:
					hook = int64(be32(h.Data))
				case unix.NFTA_HOOK_PRIORITY:
					prio = int64(int32(be32(h.Data)))
				}
			}
		}
	}
	if hook >= 0 {
		ci.desc = fmt.Sprintf("type %s hook %s priority %d policy %s", typ, hookNames[uint32(hook)], prio, policy)
	}
	return ci
}

var hookNames = map[uint32]string{0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}

func newChain(c *nftables.Chain) chainInfo {
	ci := chainInfo{name: c.Name}
	if c.Hooknum != nil {
		pol := "accept"
		if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
			pol = "drop"
		}
		ci.desc = fmt.Sprintf("type %s hook %s priority %d policy %s", c.Type, hookNames[uint32(*c.Hooknum)], int32(*c.Priority), pol)
	}
	return ci
}

type ruleInfo struct {
	chain  string
	key    string // normalized expressions: equal keys, equal rules
	text   string
	origin string // "file:line" of the statement of a new rule
}

// diff compares the live table with the converted ruleset. prev, when
// not nil, is the ruleset the live table was loaded from: a removed rule
// found there is written as a new one is.
func diff(old *live, n *nftnl.Ruleset, prev *nftnl.Ruleset) (*Diff, error) {
	d := &Diff{Table: nftnl.FamilyName(n.Table.Family) + " " + n.Table.Name, Exists: old != nil}
	// Sets.
	oldSets := map[string]*liveSet{}
	if old != nil {
		for _, s := range old.sets {
			if !s.anonymous() {
				oldSets[s.name] = s
			}
		}
	}
	newSets := map[string]bool{}
	for _, s := range n.Sets {
		newSets[s.Set.Name] = true
		nd := setDesc(s.Set.KeyType.GetNFTMagic(), s.Set.Timeout, s.Set.Size, s.Set.Comment)
		o, ok := oldSets[s.Set.Name]
		switch {
		case !ok:
			d.Sets = append(d.Sets, Change{'+', "set " + s.Set.Name, nd})
		case setDesc(o.keyType, o.timeout, o.size, o.comment) != nd:
			d.Sets = append(d.Sets, Change{'~', "set " + s.Set.Name, setDesc(o.keyType, o.timeout, o.size, o.comment) + " -> " + nd})
		}
	}
	if old != nil {
		for _, s := range old.sets {
			if !s.anonymous() && !newSets[s.name] {
				d.Sets = append(d.Sets, Change{'-', "set " + s.name, fmt.Sprintf("%s (%d elements dropped)", setDesc(s.keyType, s.timeout, s.size, s.comment), len(s.elems))})
			}
		}
	}
	// Chains.
	oldChains := map[string]chainInfo{}
	if old != nil {
		for _, m := range old.chains {
			ci := liveChain(m)
			oldChains[ci.name] = ci
		}
	}
	newChains := map[string]bool{}
	for _, c := range n.Chains {
		ci := newChain(c)
		newChains[ci.name] = true
		o, ok := oldChains[ci.name]
		switch {
		case !ok:
			d.Chains = append(d.Chains, Change{'+', "chain " + ci.name, ci.desc})
		case o.desc != ci.desc:
			d.Chains = append(d.Chains, Change{'~', "chain " + ci.name, o.desc + " -> " + ci.desc})
		}
	}
	for name := range oldChains {
		if !newChains[name] {
			d.Chains = append(d.Chains, Change{'-', "chain " + name, oldChains[name].desc})
		}
	}
	sort.Slice(d.Chains, func(i, j int) bool { return d.Chains[i].What < d.Chains[j].What })
	// Rules, per chain, as a multiset of normalized expressions.
	var oldRules []ruleInfo
	if old != nil {
		anon := map[string]string{}
		for _, s := range old.sets {
			if s.anonymous() {
				anon[s.name] = elemsKey(s.elems)
			}
		}
		for _, m := range old.rules {
			ri, err := liveRule(m, anon)
			if err != nil {
				return nil, err
			}
			oldRules = append(oldRules, ri)
		}
	}
	var newRules []ruleInfo
	for _, r := range n.Rules {
		ri, err := convRule(r)
		if err != nil {
			return nil, err
		}
		newRules = append(newRules, ri)
	}
	count := map[string]int{}
	for _, r := range oldRules {
		count[r.chain+"\x00"+r.key]++
	}
	for _, r := range newRules {
		k := r.chain + "\x00" + r.key
		if count[k] > 0 {
			count[k]--
			d.Same++
			continue
		}
		what := "rule in chain " + r.chain
		if r.origin != "" {
			what += ", " + r.origin
		}
		d.Rules = append(d.Rules, Change{'+', what, r.text})
	}
	known := map[string]ruleInfo{}
	if prev != nil {
		for _, r := range prev.Rules {
			if ri, err := convRule(r); err == nil {
				known[ri.chain+"\x00"+ri.key] = ri
			}
		}
	}
	for _, r := range oldRules {
		k := r.chain + "\x00" + r.key
		if count[k] > 0 {
			count[k]--
			what, text := "rule in chain "+r.chain, r.text
			if p, ok := known[k]; ok {
				text = p.text
				if p.origin != "" {
					what += ", " + p.origin
				}
			}
			d.Rules = append(d.Rules, Change{'-', what, text})
		}
	}
	return d, nil
}

func elemsKey(es []*liveElem) string {
	var parts []string
	for _, e := range es {
		s := hex.EncodeToString(e.key)
		if e.flags&unix.NFT_SET_ELEM_INTERVAL_END != 0 {
			s += "/end"
		}
		parts = append(parts, s)
	}
	// Dumps list an interval set's elements in another order than nft
	// sends them.
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func liveRule(m netlink.Message, anon map[string]string) (ruleInfo, error) {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return ruleInfo{}, err
	}
	var ri ruleInfo
	var exprs []byte
	var comment string
	for _, a := range attrs {
		switch a.Type &^ unix.NLA_F_NESTED {
		case unix.NFTA_RULE_CHAIN:
			ri.chain = attrString(a.Data)
		case unix.NFTA_RULE_EXPRESSIONS:
			exprs = a.Data
		case unix.NFTA_RULE_USERDATA:
			comment = udString(a.Data, 0)
		}
	}
	ri.key, ri.text, err = exprsKey(exprs, func(name []byte) string { return anon[attrString(name)] })
	if comment != "" {
		ri.text += fmt.Sprintf(" comment %q", comment)
	}
	return ri, err
}

func convRule(r *nftnl.Rule) (ruleInfo, error) {
	ri := ruleInfo{chain: r.Chain.Name}
	anon := map[uint32]string{}
	for _, a := range r.Anon {
		var es []*liveElem
		for _, e := range a.Elems {
			le := &liveElem{key: e.Key}
			if e.IntervalEnd {
				le.flags = unix.NFT_SET_ELEM_INTERVAL_END
			}
			es = append(es, le)
		}
		anon[a.Set.ID] = elemsKey(es)
	}
	var list []netlink.Attribute
	for _, e := range r.Rule.Exprs {
		b, err := expr.Marshal(byte(r.Rule.Table.Family), e)
		if err != nil {
			return ri, err
		}
		list = append(list, netlink.Attribute{Type: unix.NFTA_LIST_ELEM | unix.NLA_F_NESTED, Data: b})
	}
	data, err := netlink.MarshalAttributes(list)
	if err != nil {
		return ri, err
	}
	// The ct direction google/nftables leaves out (nftnl.PatchMessage).
	pm := nftnl.PatchMessage(netlink.Message{
		Header: netlink.Header{Type: msgType(unix.NFT_MSG_NEWRULE)},
		Data:   append(make([]byte, 4), mustMarshal([]netlink.Attribute{{Type: unix.NFTA_RULE_EXPRESSIONS | unix.NLA_F_NESTED, Data: data}})...),
	})
	if in, err := netlink.UnmarshalAttributes(pm.Data[4:]); err == nil && len(in) == 1 {
		data = in[0].Data
	}
	ri.key, ri.text, err = exprsKey(data, nil)
	ri.key = replaceAnon(ri.key, anon)
	ri.text = replaceAnon(ri.text, anon)
	// In the plan, a new rule is written as nft writes it, after the
	// statement it comes from.
	if s, err := nft.RuleString(r.From); err == nil {
		ri.text = s
	} else if r.From.Comment != "" {
		ri.text += fmt.Sprintf(" comment %q", r.From.Comment)
	}
	if o := r.From.Origin; o.Pos.IsValid() {
		ri.origin = fmt.Sprintf("%s:%d", o.Pos.File, o.Pos.Line)
	}
	return ri, err
}

func mustMarshal(a []netlink.Attribute) []byte {
	b, _ := netlink.MarshalAttributes(a)
	return b
}

// replaceAnon replaces the "@#ID" placeholders of anonymous sets of a
// rule being converted with their elements.
func replaceAnon(s string, anon map[uint32]string) string {
	for id, v := range anon {
		s = strings.ReplaceAll(s, fmt.Sprintf("@#%d;", id), v)
	}
	return s
}

// exprsKey renders marshalled expressions as a normalized key (what the
// kernel evaluates, without counters' values, handles and set ids) and
// a compact text for people.
func exprsKey(data []byte, anon func(name []byte) string) (key, text string, err error) {
	list, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return "", "", err
	}
	var k, t []string
	for _, el := range list {
		ex, err := netlink.UnmarshalAttributes(el.Data)
		if err != nil {
			return "", "", err
		}
		var name string
		var inner []netlink.Attribute
		for _, a := range ex {
			switch a.Type &^ unix.NLA_F_NESTED {
			case unix.NFTA_EXPR_NAME:
				name = attrString(a.Data)
			case unix.NFTA_EXPR_DATA:
				inner, _ = netlink.UnmarshalAttributes(a.Data)
			}
		}
		ek, et := exprKey(name, inner, anon)
		k = append(k, ek)
		t = append(t, et)
	}
	return strings.Join(k, " "), strings.Join(t, " "), nil
}

func exprKey(name string, attrs []netlink.Attribute, anon func([]byte) string) (key, text string) {
	var parts []string
	var setRef string
	// Dumps order attributes as the kernel writes them.
	sort.SliceStable(attrs, func(i, j int) bool { return attrs[i].Type&^unix.NLA_F_NESTED < attrs[j].Type&^unix.NLA_F_NESTED })
	// A TCP reset has no ICMP code: the kernel dumps none
	// (nft_reject_dump), google/nftables sends one.
	tcpReset := name == "reject" && len(attrs) > 0 && attrs[0].Type&^unix.NLA_F_NESTED == unix.NFTA_REJECT_TYPE &&
		len(attrs[0].Data) == 4 && be32(attrs[0].Data) == unix.NFT_REJECT_TCP_RST
	for _, a := range attrs {
		typ := a.Type &^ unix.NLA_F_NESTED
		v := a.Data
		zero := bytes.Equal(v, make([]byte, len(v)))
		switch {
		case name == "bitwise" && typ == 6 && zero, // NFTA_BITWISE_OP: bool, the default
			name == "dynset" && typ == unix.NFTA_DYNSET_TIMEOUT && zero,
			name == "nat" && (typ == unix.NFTA_NAT_REG_ADDR_MAX || typ == unix.NFTA_NAT_REG_PROTO_MAX):
			continue
		case name == "nat" && typ == unix.NFTA_NAT_FLAGS:
			// The kernel adds NF_NAT_RANGE_MAP_IPS when an address is given.
			f := be32(v) &^ 1
			if f == 0 {
				continue
			}
			parts = append(parts, fmt.Sprintf("%d=%x", typ, f))
			continue
		case name == "ct" && typ == unix.NFTA_CT_DIRECTION:
			// A u8 for the kernel; google/nftables sends 4 bytes.
			parts = append(parts, fmt.Sprintf("%d=%x", typ, v[len(v)-1]))
			continue
		case name == "counter":
			continue // packets and bytes
		case tcpReset && typ == unix.NFTA_REJECT_ICMP_CODE:
			continue
		case name == "lookup" && typ == unix.NFTA_LOOKUP_SET_ID,
			name == "dynset" && typ == unix.NFTA_DYNSET_SET_ID:
			if anon == nil && setRef == "" {
				setRef = fmt.Sprintf("@#%d;", be32(v))
			}
			continue
		case name == "lookup" && typ == unix.NFTA_LOOKUP_SET, name == "dynset" && typ == unix.NFTA_DYNSET_SET_NAME:
			n := attrString(v)
			if strings.HasPrefix(n, "__set") {
				if anon != nil {
					setRef = anon(v)
				}
				continue
			}
			setRef = "@" + n
			continue
		case (name == "lookup" && typ == unix.NFTA_LOOKUP_FLAGS) || (name == "dynset" && typ == unix.NFTA_DYNSET_FLAGS) ||
			(name == "limit" && typ == unix.NFTA_LIMIT_FLAGS) ||
			// The kernel dumps a connlimit's flags only when set
			// (nft_connlimit_do_dump); google/nftables always sends them.
			(name == "connlimit" && typ == expr.NFTA_CONNLIMIT_FLAGS):
			if zero {
				continue
			}
		case name == "dynset" && (typ == unix.NFTA_DYNSET_EXPR || typ == 10):
			list := []netlink.Attribute{{Type: unix.NFTA_LIST_ELEM, Data: v}}
			if typ == 10 {
				list, _ = netlink.UnmarshalAttributes(v)
			}
			for _, l := range list {
				in, _ := netlink.UnmarshalAttributes(l.Data)
				var n string
				var d []netlink.Attribute
				for _, x := range in {
					switch x.Type &^ unix.NLA_F_NESTED {
					case unix.NFTA_EXPR_NAME:
						n = attrString(x.Data)
					case unix.NFTA_EXPR_DATA:
						d, _ = netlink.UnmarshalAttributes(x.Data)
					}
				}
				_, et := exprKey(n, d, anon)
				parts = append(parts, "["+et+"]")
			}
			continue
		}
		if name == "log" && typ == unix.NFTA_LOG_PREFIX {
			parts = append(parts, fmt.Sprintf("%d=%q", typ, attrString(v)))
			continue
		}
		if name == "immediate" && typ == unix.NFTA_IMMEDIATE_DATA {
			parts = append(parts, immText(v))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d=%s", typ, hex.EncodeToString(v)))
	}
	if setRef != "" {
		parts = append(parts, setRef)
	}
	s := name + "(" + strings.Join(parts, ",") + ")"
	return s, s
}

// immText shows an immediate's verdict by name.
func immText(v []byte) string {
	in, _ := netlink.UnmarshalAttributes(v)
	for _, a := range in {
		if a.Type&^unix.NLA_F_NESTED == unix.NFTA_DATA_VERDICT {
			vv, _ := netlink.UnmarshalAttributes(a.Data)
			var code int32
			var chain string
			for _, x := range vv {
				switch x.Type &^ unix.NLA_F_NESTED {
				case unix.NFTA_VERDICT_CODE:
					code = int32(be32(x.Data))
				case unix.NFTA_VERDICT_CHAIN:
					chain = attrString(x.Data)
				}
			}
			names := map[int32]string{1: "accept", 0: "drop", -1: "continue", -3: "jump", -4: "goto", -5: "return"}
			s := names[code]
			if s == "" {
				s = fmt.Sprintf("verdict %d", code)
			}
			if chain != "" {
				s += " " + chain
			}
			return s
		}
		if a.Type&^unix.NLA_F_NESTED == unix.NFTA_DATA_VALUE {
			return "value=" + hex.EncodeToString(a.Data)
		}
	}
	return hex.EncodeToString(v)
}
