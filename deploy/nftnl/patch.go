//go:build linux

package nftnl

import (
	"encoding/binary"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctDirOriginal is IP_CT_DIR_ORIGINAL (nf_conntrack_tuple_common.h).
const ctDirOriginal = 0

// PatchMessage completes a rule message marshalled by google/nftables
// (v0.3.0) where that library leaves out an attribute the kernel needs:
// a ct expression reading an address by family (NFT_CT_SRC_IP, DST_IP,
// SRC_IP6, DST_IP6, as nft's `ct original ip daddr` does) must carry
// NFTA_CT_DIRECTION (net/netfilter/nft_ct.c, nft_ct_get_init), which the
// library sends only for the older keys. The direction added is the
// original one, the only one kwl reads. Other messages are returned as
// they are.
func PatchMessage(m netlink.Message) netlink.Message {
	if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWRULE) || len(m.Data) < 4 {
		return m
	}
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return m
	}
	changed := false
	for i, a := range attrs {
		if a.Type&^unix.NLA_F_NESTED != unix.NFTA_RULE_EXPRESSIONS {
			continue
		}
		list, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return m
		}
		for j, el := range list {
			if d, ok := patchCt(el.Data); ok {
				list[j].Data, list[j].Length = d, 0
				changed = true
			}
		}
		if b, err := netlink.MarshalAttributes(list); err == nil {
			attrs[i].Data, attrs[i].Length = b, 0
		}
	}
	if !changed {
		return m
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return m
	}
	m.Data = append(m.Data[:4:4], b...)
	m.Header.Length = 0
	return m
}

// patchCt adds the direction to one marshalled expression if it is a ct
// load of a family address without one.
func patchCt(data []byte) ([]byte, bool) {
	ex, err := netlink.UnmarshalAttributes(data)
	if err != nil {
		return nil, false
	}
	isCt := false
	for _, a := range ex {
		if a.Type == unix.NFTA_EXPR_NAME && string(a.Data) == "ct\x00" {
			isCt = true
		}
	}
	if !isCt {
		return nil, false
	}
	for k, a := range ex {
		if a.Type&^unix.NLA_F_NESTED != unix.NFTA_EXPR_DATA {
			continue
		}
		inner, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return nil, false
		}
		var key uint32
		hasDir := false
		for _, x := range inner {
			switch x.Type {
			case unix.NFTA_CT_KEY:
				if len(x.Data) == 4 {
					key = binary.BigEndian.Uint32(x.Data)
				}
			case unix.NFTA_CT_DIRECTION:
				hasDir = true
			}
		}
		switch key {
		case unix.NFT_CT_SRC_IP, unix.NFT_CT_DST_IP, unix.NFT_CT_SRC_IP6, unix.NFT_CT_DST_IP6:
		default:
			return nil, false
		}
		if hasDir {
			return nil, false
		}
		inner = append(inner, netlink.Attribute{Type: unix.NFTA_CT_DIRECTION, Data: []byte{ctDirOriginal}})
		b, err := netlink.MarshalAttributes(inner)
		if err != nil {
			return nil, false
		}
		ex[k].Data, ex[k].Length = b, 0
		out, err := netlink.MarshalAttributes(ex)
		if err != nil {
			return nil, false
		}
		return out, true
	}
	return nil, false
}

// tokenTypeof is the user data nft writes for a set declared "typeof
// @th,64,128" (NFTNL_UDATA_SET_KEY_TYPEOF, type 3: a payload expression,
// nft's expression type 7, whose description is base 3, the transport
// header, offset 64 and length 128 bits), read from nft --debug=mnl. The
// kernel keeps it for nft alone: without it nft lists the set's type as
// "type 0", which it cannot read back.
var tokenTypeof = func() []byte {
	u32 := func(typ byte, v uint32) []byte { return binary.NativeEndian.AppendUint32([]byte{typ, 4}, v) }
	desc := slices.Concat(u32(0, 0), u32(1, 0), u32(2, 3), u32(3, 64), u32(4, 128))
	nest := slices.Concat(u32(0, 7), []byte{1, byte(len(desc))}, desc)
	return append([]byte{3, byte(len(nest))}, nest...)
}()

// withTypeof adds tokenTypeof to the user data of a message that creates
// a set, after the key's byte order that the library writes first.
func withTypeof(m netlink.Message) netlink.Message {
	if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSET) || len(m.Data) < 4 {
		return m
	}
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return m
	}
	for i, a := range attrs {
		if a.Type != unix.NFTA_SET_USERDATA {
			continue
		}
		at := 0
		if len(a.Data) >= 2 && a.Data[0] == 0 { // NFTNL_UDATA_SET_KEYBYTEORDER
			at = 2 + int(a.Data[1])
		}
		attrs[i].Data = slices.Concat(a.Data[:at], tokenTypeof, a.Data[at:])
		attrs[i].Length = 0
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return m
	}
	m.Data = append(append([]byte{}, m.Data[:4]...), b...)
	return m
}
