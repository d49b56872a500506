//go:build linux

package deploy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Mark is what kwl writes into the user data of the table it creates
// (NFTA_TABLE_USERDATA, which the kernel keeps as it is given): that kwl
// made it, from which policy, and which services the policy guards. A
// table without a mark was not created by kwl, and kwl neither replaces
// nor deletes it unless told to (Options.ForceForeign).
type Mark struct {
	// Policy identifies the policy deployed (a hash of its source);
	// "" when the caller gave none.
	Policy string
	// Guarded lists the services whose new connections need an open
	// door, sorted.
	Guarded []string
}

// nftnl user data types: a list of (type, length, value). nft shows a
// table's comment (type 0, NUL-terminated) and skips types it does not
// know, so kwl's own fields use types of their own.
const (
	udTableComment = 0    // NFTNL_UDATA_TABLE_COMMENT
	udKwlGuarded   = 0xf0 // kwl: guarded services, comma-separated
	udMax          = 256  // NFT_USERDATA_MAXLEN
)

// markComment is the comment kwl gives its tables; nft list shows it.
const markComment = "kwl"

// Attribute numbers of tables that golang.org/x/sys/unix does not define.
const (
	nftaTableUserdata = 6 // NFTA_TABLE_USERDATA
)

// encode returns the mark as nftnl user data.
func (m *Mark) encode() ([]byte, error) {
	comment := markComment
	if m.Policy != "" {
		comment += " policy " + m.Policy
	}
	var b bytes.Buffer
	put := func(typ byte, v string) {
		b.WriteByte(typ)
		b.WriteByte(byte(len(v) + 1))
		b.WriteString(v)
		b.WriteByte(0)
	}
	if len(comment) > 126 {
		return nil, fmt.Errorf("table mark: policy id %q is too long", m.Policy)
	}
	put(udTableComment, comment)
	if g := strings.Join(m.Guarded, ","); g != "" {
		if len(g) > 254 || b.Len()+len(g)+3 > udMax {
			return nil, fmt.Errorf("table mark: the names of the %d guarded services take %d bytes; the kernel keeps %d bytes of a table's user data (shorten the service names)",
				len(m.Guarded), len(g), udMax-b.Len()-3)
		}
		put(udKwlGuarded, g)
	}
	return b.Bytes(), nil
}

// parseMark reads a mark from a table's user data; nil when it is not
// kwl's.
func parseMark(ud []byte) *Mark {
	if ud == nil {
		return nil
	}
	comment, ok := udField(ud, udTableComment)
	if !ok || (comment != markComment && !strings.HasPrefix(comment, markComment+" policy ")) {
		return nil
	}
	m := &Mark{Policy: strings.TrimPrefix(strings.TrimPrefix(comment, markComment), " policy ")}
	if g, ok := udField(ud, udKwlGuarded); ok && g != "" {
		m.Guarded = strings.Split(g, ",")
	}
	return m
}

// udField finds the NUL-terminated string of type typ in nftnl user data.
func udField(b []byte, typ byte) (string, bool) {
	for len(b) >= 2 {
		t, n := b[0], int(b[1])
		if 2+n > len(b) {
			break
		}
		if t == typ {
			v := b[2 : 2+n]
			if len(v) == 0 || v[len(v)-1] != 0 {
				return "", false
			}
			return string(v[:len(v)-1]), true
		}
		b = b[2+n:]
	}
	return "", false
}

// tableInfo is what deploy needs to know of a live table's message.
type tableInfo struct {
	handle   uint64
	userdata []byte // nil: none
}

func parseTable(m netlink.Message) (tableInfo, error) {
	var ti tableInfo
	if len(m.Data) < 4 {
		return ti, errors.New("short table message")
	}
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return ti, fmt.Errorf("table message: %w", err)
	}
	for _, a := range attrs {
		switch a.Type &^ unix.NLA_F_NESTED {
		case nftaTableHandle:
			ti.handle = be64(a.Data)
		case nftaTableUserdata:
			ti.userdata = a.Data
		}
	}
	return ti, nil
}

// ForeignTableError is returned when the table kwl would replace or
// delete exists but was not created by kwl.
type ForeignTableError struct {
	Table string // "inet filter"
	What  string // "replace", "delete"
}

func (e *ForeignTableError) Error() string {
	return fmt.Sprintf("table %s exists and was not created by kwl (it has no kwl mark): refusing to %s it; "+
		"choose another table with --table, or, if it is an old kwl table, --force-foreign %ss it", e.Table, e.What, e.What)
}

// UnguardError is returned when a redeploy would leave a service that
// the live table guards with no guard at all.
type UnguardError struct {
	Table    string
	Services []string
}

func (e *UnguardError) Error() string {
	return fmt.Sprintf("the live table %s guards %s with knocks, and the new policy does not: deploying it would open %s to every source; "+
		"--force deploys it anyway", e.Table, strings.Join(e.Services, ", "), map[bool]string{true: "it", false: "them"}[len(e.Services) == 1])
}

// unguarded returns the services old guards and guarded does not.
func unguarded(old *Mark, guarded []string) []string {
	if old == nil {
		return nil
	}
	var out []string
	for _, s := range old.Guarded {
		if !slices.Contains(guarded, s) {
			out = append(out, s)
		}
	}
	return out
}

// withUserdata returns m with the attribute NFTA_TABLE_USERDATA set to ud.
func withUserdata(m netlink.Message, ud []byte) (netlink.Message, error) {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return m, err
	}
	kept := attrs[:0]
	for _, a := range attrs {
		if a.Type&^unix.NLA_F_NESTED != nftaTableUserdata {
			kept = append(kept, a)
		}
	}
	kept = append(kept, netlink.Attribute{Type: nftaTableUserdata, Data: ud})
	b, err := netlink.MarshalAttributes(kept)
	if err != nil {
		return m, err
	}
	m.Data = append(append([]byte{}, m.Data[:4]...), b...)
	return m, nil
}

// delTableMsg deletes the table family/name that has the given handle,
// and fails (ENOENT, aborting the batch) if that table is gone: a table
// made meanwhile under the same name is never deleted in its place.
func delTableMsg(family byte, name string, handle uint64) (netlink.Message, error) {
	data, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstr(name)},
		{Type: nftaTableHandle, Data: binary.BigEndian.AppendUint64(nil, handle)},
	})
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: msgType(unix.NFT_MSG_DELTABLE), Flags: netlink.Request},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, data...),
	}, nil
}
