//go:build linux

package deploy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/deploy/nftnl"
)

// live is a table as the kernel holds it, read as raw netlink messages:
// what a rollback sends back, byte for byte, and where a redeploy takes
// the elements it carries over.
type live struct {
	taken  time.Time // when the elements were read
	family nftables.TableFamily
	name   string
	table  netlink.Message
	info   tableInfo // its handle and user data
	mark   *Mark     // kwl's mark; nil: the table is not kwl's
	sets   []*liveSet
	chains []netlink.Message
	rules  []netlink.Message
}

type liveSet struct {
	msg     netlink.Message
	name    string
	flags   uint32
	keyType uint32
	keyLen  uint32
	timeout time.Duration // the set's default element timeout
	size    uint32
	comment string
	elems   []*liveElem
	raw     []netlink.Message // the element dumps, as read
}

func (s *liveSet) anonymous() bool { return s.flags&unix.NFT_SET_ANONYMOUS != 0 }

type liveElem struct {
	attrs   []netlink.Attribute // as dumped
	key     []byte
	flags   uint32
	timeout time.Duration // 0: none reported
	expires time.Duration // remaining life when read; 0: none
	hasExpr bool          // stateful expressions (a limit's token bucket)
}

func nfgen(family nftables.TableFamily) []byte {
	return []byte{byte(family), unix.NFNETLINK_V0, 0, 0}
}

func msgType(t int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | t)
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func attrString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// get sends one request and returns the replies (all parts of a dump).
func get(c *netlink.Conn, typ int, family nftables.TableFamily, dump bool, attrs []netlink.Attribute) ([]netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, err
	}
	// No acknowledgement asked: Execute reads the reply only, and an
	// acknowledgement left in the socket would be taken for the reply to
	// the next request.
	flags := netlink.Request
	if dump {
		flags |= netlink.Dump
	}
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: msgType(typ), Flags: flags},
		Data:   append(nfgen(family), data...),
	})
	if err != nil {
		return nil, err
	}
	var out []netlink.Message
	for _, m := range msgs {
		if m.Header.Type == msgType(typ-1) || (typ == unix.NFT_MSG_GETSETELEM && m.Header.Type == msgType(unix.NFT_MSG_NEWSETELEM)) {
			out = append(out, m)
		}
	}
	return out, nil
}

// readLive reads table family/name with everything in it (with its sets
// and elements only, unless full), or returns nil when there is no such
// table.
func (t *target) readLive(family nftables.TableFamily, name string, full bool) (*live, error) {
	c, err := t.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	tattr := []netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: cstr(name)}}
	tabs, err := get(c, unix.NFT_MSG_GETTABLE, family, false, tattr)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		// nfnetlink has no nf_tables subsystem (nfnetlink_rcv_msg).
		return nil, fmt.Errorf("%w (%v)", ErrNoNftables, err)
	}
	if err != nil {
		return nil, classify(fmt.Errorf("read table %s: %w", name, err))
	}
	if len(tabs) != 1 {
		return nil, fmt.Errorf("read table %s: %d replies", name, len(tabs))
	}
	l := &live{family: family, name: name, table: tabs[0]}
	if l.info, err = parseTable(tabs[0]); err != nil {
		return nil, err
	}
	l.mark = parseMark(l.info.userdata)
	// The kernel's dumps of sets, chains and rules do not all honour the
	// table attribute (nf_tables_dump_chains lists the chains of every
	// table of the family): every message is checked for its table, so
	// that nothing of another table is ever taken for kwl's, nor sent
	// back by a rollback.
	sets, err := get(c, unix.NFT_MSG_GETSET, family, true, []netlink.Attribute{{Type: unix.NFTA_SET_TABLE, Data: cstr(name)}})
	if err != nil {
		return nil, fmt.Errorf("read sets of %s: %w", name, err)
	}
	for _, m := range ofTable(sets, unix.NFTA_SET_TABLE, name) {
		s, err := parseSet(m)
		if err != nil {
			return nil, err
		}
		l.sets = append(l.sets, s)
	}
	if full {
		chains, err := get(c, unix.NFT_MSG_GETCHAIN, family, true, []netlink.Attribute{{Type: unix.NFTA_CHAIN_TABLE, Data: cstr(name)}})
		if err != nil {
			return nil, fmt.Errorf("read chains of %s: %w", name, err)
		}
		l.chains = ofTable(chains, unix.NFTA_CHAIN_TABLE, name)
		rules, err := get(c, unix.NFT_MSG_GETRULE, family, true, []netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: cstr(name)}})
		if err != nil {
			return nil, fmt.Errorf("read rules of %s: %w", name, err)
		}
		l.rules = ofTable(rules, unix.NFTA_RULE_TABLE, name)
	}
	// Elements last, just before the time stamp that their remaining
	// lives are measured from.
	for _, s := range l.sets {
		ms, err := get(c, unix.NFT_MSG_GETSETELEM, family, true, []netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: cstr(name)},
			{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: cstr(s.name)},
		})
		if err != nil {
			return nil, fmt.Errorf("read elements of set %s: %w", s.name, err)
		}
		s.raw = ofTable(ms, unix.NFTA_SET_ELEM_LIST_TABLE, name)
		if err := s.parseRaw(); err != nil {
			return nil, err
		}
	}
	l.taken = time.Now()
	return l, nil
}

// parseRaw parses the element dumps of s.
func (s *liveSet) parseRaw() error {
	s.elems = nil
	for _, m := range s.raw {
		es, err := parseElems(m)
		if err != nil {
			return fmt.Errorf("elements of set %s: %w", s.name, err)
		}
		s.elems = append(s.elems, es...)
	}
	return nil
}

// ofTable returns the messages whose attribute attr names table name.
func ofTable(msgs []netlink.Message, attr uint16, name string) []netlink.Message {
	var out []netlink.Message
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			continue
		}
		for ad.Next() {
			if ad.Type() == attr {
				if attrString(ad.Bytes()) == name {
					out = append(out, m)
				}
				break
			}
		}
	}
	return out
}

func be32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func be64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func parseSet(m netlink.Message) (*liveSet, error) {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return nil, fmt.Errorf("set message: %w", err)
	}
	s := &liveSet{msg: m}
	for _, a := range attrs {
		switch a.Type &^ unix.NLA_F_NESTED {
		case unix.NFTA_SET_NAME:
			s.name = attrString(a.Data)
		case unix.NFTA_SET_FLAGS:
			s.flags = be32(a.Data)
		case unix.NFTA_SET_KEY_TYPE:
			s.keyType = be32(a.Data)
		case unix.NFTA_SET_KEY_LEN:
			s.keyLen = be32(a.Data)
		case unix.NFTA_SET_TIMEOUT:
			s.timeout = time.Duration(be64(a.Data)) * time.Millisecond
		case unix.NFTA_SET_DESC:
			if in, err := netlink.UnmarshalAttributes(a.Data); err == nil {
				for _, d := range in {
					if d.Type&^unix.NLA_F_NESTED == unix.NFTA_SET_DESC_SIZE {
						s.size = be32(d.Data)
					}
				}
			}
		case unix.NFTA_SET_USERDATA:
			s.comment = udString(a.Data, 7) // NFTNL_UDATA_SET_COMMENT
		}
	}
	return s, nil
}

// udString finds a string of type typ in nftnl user data (a list of
// type, length, value).
func udString(b []byte, typ byte) string {
	for len(b) >= 2 {
		t, n := b[0], int(b[1])
		if 2+n > len(b) {
			break
		}
		if t == typ {
			return attrString(b[2 : 2+n])
		}
		b = b[2+n:]
	}
	return ""
}

func parseElems(m netlink.Message) ([]*liveElem, error) {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return nil, err
	}
	var out []*liveElem
	for _, a := range attrs {
		if a.Type&^unix.NLA_F_NESTED != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		list, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return nil, err
		}
		for _, el := range list {
			ea, err := netlink.UnmarshalAttributes(el.Data)
			if err != nil {
				return nil, err
			}
			e := &liveElem{attrs: ea}
			for _, x := range ea {
				switch x.Type &^ unix.NLA_F_NESTED {
				case unix.NFTA_SET_ELEM_KEY:
					if in, err := netlink.UnmarshalAttributes(x.Data); err == nil && len(in) > 0 {
						e.key = in[0].Data
					}
				case unix.NFTA_SET_ELEM_FLAGS:
					e.flags = be32(x.Data)
				case unix.NFTA_SET_ELEM_TIMEOUT:
					e.timeout = time.Duration(be64(x.Data)) * time.Millisecond
				case unix.NFTA_SET_ELEM_EXPIRATION:
					e.expires = time.Duration(be64(x.Data)) * time.Millisecond
				case unix.NFTA_SET_ELEM_EXPR, nftaSetElemExpressions:
					e.hasExpr = true
				}
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// nftaSetElemExpressions is NFTA_SET_ELEM_EXPRESSIONS (nf_tables.h).
const nftaSetElemExpressions = 11

// strip returns the message with the attributes of the given types
// removed, as a creation request (NLM_F_CREATE, plus extra flags).
func strip(m netlink.Message, newType int, extra netlink.HeaderFlags, drop ...uint16) (netlink.Message, error) {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return m, err
	}
	kept := attrs[:0]
	for _, a := range attrs {
		skip := false
		for _, d := range drop {
			if a.Type&^unix.NLA_F_NESTED == d {
				skip = true
			}
		}
		if !skip {
			kept = append(kept, a)
		}
	}
	b, err := netlink.MarshalAttributes(kept)
	if err != nil {
		return m, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: msgType(newType), Flags: netlink.Request | netlink.Create | extra},
		// The dump's header carries the generation in res_id; a request
		// carries 0 there.
		Data: append([]byte{m.Data[0], unix.NFNETLINK_V0, 0, 0}, b...),
	}, nil
}

// elemMsgs builds NEWSETELEM messages adding elems to set name of table,
// nftnl.ElemsPerMessage per message (an attribute's length is 16 bits).
func elemMsgs(family nftables.TableFamily, table, set string, elems [][]netlink.Attribute) ([]netlink.Message, error) {
	var out []netlink.Message
	const per = nftnl.ElemsPerMessage
	for i := 0; i < len(elems); i += per {
		j := min(i+per, len(elems))
		list := make([]netlink.Attribute, 0, j-i)
		for _, ea := range elems[i:j] {
			b, err := netlink.MarshalAttributes(ea)
			if err != nil {
				return nil, err
			}
			list = append(list, netlink.Attribute{Type: unix.NFTA_LIST_ELEM | unix.NLA_F_NESTED, Data: b})
		}
		lb, err := netlink.MarshalAttributes(list)
		if err != nil {
			return nil, err
		}
		data, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: cstr(table)},
			{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: cstr(set)},
			{Type: unix.NFTA_SET_ELEM_LIST_ELEMENTS | unix.NLA_F_NESTED, Data: lb},
		})
		if err != nil {
			return nil, err
		}
		out = append(out, netlink.Message{
			Header: netlink.Header{Type: msgType(unix.NFT_MSG_NEWSETELEM), Flags: netlink.Request | netlink.Create},
			Data:   append(nfgen(family), data...),
		})
	}
	return out, nil
}

// carried returns the attributes that re-add e with the life it has left
// after elapsed: its key, its timeout, and its expiration (nft's
// `timeout T expires E`; the kernel refuses an expiration beyond the
// timeout with ERANGE, nf_tables_api.c, nft_add_set_elem). ok is false
// when the element has expired meanwhile.
func (e *liveElem) carried(setTimeout, elapsed time.Duration) (attrs []netlink.Attribute, ok bool) {
	key, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_DATA_VALUE, Data: e.key}})
	attrs = []netlink.Attribute{{Type: unix.NFTA_SET_ELEM_KEY | unix.NLA_F_NESTED, Data: key}}
	if e.expires == 0 && e.timeout == 0 {
		return attrs, true // an element that never expires
	}
	left := e.expires - elapsed
	left = left.Truncate(time.Millisecond)
	if left <= 0 {
		return nil, false
	}
	timeout := e.timeout
	if timeout == 0 {
		timeout = setTimeout
	}
	timeout = max(timeout, left)
	attrs = append(attrs,
		netlink.Attribute{Type: unix.NFTA_SET_ELEM_TIMEOUT, Data: binary.BigEndian.AppendUint64(nil, uint64(timeout.Milliseconds()))},
		netlink.Attribute{Type: unix.NFTA_SET_ELEM_EXPIRATION, Data: binary.BigEndian.AppendUint64(nil, uint64(left.Milliseconds()))})
	return attrs, true
}

// restoreBatch appends to b the messages that put l back as it was; the
// table of that name must be gone first (deleted earlier in the batch). Elements of named sets
// come from state when it has a set of the same name and type (the live
// state at rollback time) and from l otherwise, aged by the time since
// they were read; elements with stateful expressions (per-source token
// buckets) are left out, since their state cannot be read back and a
// new element starts with a full bucket anyway.
func restoreBatch(b *nftnl.Batch, l *live, state *live) error {
	add := func(what string, m netlink.Message) {
		b.Msgs = append(b.Msgs, m)
		b.Notes = append(b.Notes, nftnl.Note{What: what})
	}
	m, err := strip(l.table, unix.NFT_MSG_NEWTABLE, netlink.Excl, nftaTableHandle, unix.NFTA_TABLE_USE, nftaTableOwner)
	if err != nil {
		return err
	}
	add("restore table "+l.name, m)
	now := time.Now()
	for i, s := range l.sets {
		decl := s.msg
		// A token set's comment records the windows it was loaded
		// through: the live one's, when it has the same secret, is the
		// later, and the tokens of those windows come back with it, so
		// that a renewal does not load them again.
		if _, _, id, ok := splitTokenComment(s.comment); ok && state != nil {
			if cur := state.set(s.name); cur != nil && cur.keyType == s.keyType && cur.keyLen == s.keyLen {
				if _, _, cid, ok := splitTokenComment(cur.comment); ok && cid == id {
					decl = cur.msg
				}
			}
		}
		m, err := strip(decl, unix.NFT_MSG_NEWSET, 0, nftaSetHandle, nftaSetType, nftaSetCount)
		if err != nil {
			return err
		}
		// nf_tables_newset requires NFTA_SET_ID, which dumps leave out.
		id, _ := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_SET_ID, Data: binary.BigEndian.AppendUint32(nil, uint32(i+1))}})
		m.Data = append(m.Data, id...)
		add("restore set "+s.name, m)
		src, elapsed := s, now.Sub(l.taken)
		if !s.anonymous() && state != nil {
			if cur := state.set(s.name); cur != nil && cur.keyType == s.keyType && cur.keyLen == s.keyLen {
				src, elapsed = cur, now.Sub(state.taken)
			}
		}
		var elems [][]netlink.Attribute
		for _, e := range src.elems {
			if s.anonymous() {
				elems = append(elems, e.attrs)
				continue
			}
			if e.hasExpr {
				continue
			}
			if a, ok := e.carried(s.timeout, elapsed); ok {
				elems = append(elems, a)
			}
		}
		if s.size > 0 && len(elems) > int(s.size) {
			elems = elems[:s.size]
		}
		ms, err := elemMsgs(l.family, l.name, s.name, elems)
		if err != nil {
			return err
		}
		for _, m := range ms {
			add("restore elements of set "+s.name, m)
		}
	}
	for _, c := range l.chains {
		m, err := strip(c, unix.NFT_MSG_NEWCHAIN, 0, unix.NFTA_CHAIN_HANDLE, unix.NFTA_CHAIN_USE, nftaChainID)
		if err != nil {
			return err
		}
		add("restore chain", m)
	}
	for _, r := range l.rules {
		m, err := strip(r, unix.NFT_MSG_NEWRULE, netlink.Append, unix.NFTA_RULE_HANDLE, unix.NFTA_RULE_POSITION, nftaRuleID)
		if err != nil {
			return err
		}
		add("restore rule", m)
	}
	return nil
}

// Attribute numbers golang.org/x/sys/unix does not define (nf_tables.h).
const (
	nftaTableHandle = 4  // NFTA_TABLE_HANDLE
	nftaTableOwner  = 7  // NFTA_TABLE_OWNER: the owning socket, dumps only
	nftaSetHandle   = 16 // NFTA_SET_HANDLE
	nftaSetType     = 19 // NFTA_SET_TYPE: the backend, reported by dumps only
	nftaSetCount    = 20 // NFTA_SET_COUNT: the number of elements, dumps only
	nftaChainID     = 11 // NFTA_CHAIN_ID
	nftaRuleID      = 9  // NFTA_RULE_ID
)

func (l *live) set(name string) *liveSet {
	if l == nil {
		return nil
	}
	for _, s := range l.sets {
		if s.name == name {
			return s
		}
	}
	return nil
}
