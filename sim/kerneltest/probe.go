//go:build linux

package kerneltest

import (
	"encoding/json"
	"fmt"
)

// probeRuleset is the harness's own table in the firewall namespace. Its
// chains run after every kwl chain on the same hook (priority 1000 against
// kwl's 0 and iptables-nft's 0): a packet kwl dropped never gets here,
// since a drop ends the hook while an accept ends only its own base chain.
// The tag is the IPv4 identification or the IPv6 flow label that the
// sender set (see the package doc); tag 0 is never used, so traffic of the
// namespaces' own (none expected) is not counted.
const probeRuleset = `table inet kwlprobe {
	set seen4 {
		typeof ip id
		size 65535
		flags dynamic
	}
	set seen6 {
		typeof ip6 flowlabel
		size 65535
		flags dynamic
	}
	chain input {
		type filter hook input priority 1000; policy accept;
		meta l4proto { tcp, udp } ip id != 0 add @seen4 { ip id }
		meta l4proto { tcp, udp } ip6 flowlabel != 0 add @seen6 { ip6 flowlabel }
	}
	chain forward {
		type filter hook forward priority 1000; policy accept;
		meta l4proto { tcp, udp } ip id != 0 add @seen4 { ip id }
		meta l4proto { tcp, udp } ip6 flowlabel != 0 add @seen6 { ip6 flowlabel }
	}
}
`

// Passed returns the tags of the packets that got past kwl, per family.
func (l *Lab) Passed() (v4, v6 map[uint32]bool, err error) {
	if v4, err = l.readSet("seen4"); err != nil {
		return nil, nil, err
	}
	if v6, err = l.readSet("seen6"); err != nil {
		return nil, nil, err
	}
	return v4, v6, nil
}

func (l *Lab) readSet(name string) (map[uint32]bool, error) {
	out, err := l.FW.Run("nft", "-j", "list", "set", "inet", "kwlprobe", name)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft -j list set %s: %w", name, err)
	}
	tags := map[uint32]bool{}
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			var n uint32
			if err := json.Unmarshal(e, &n); err != nil {
				// An element with attributes: {"elem": {"val": N, ...}}.
				var w struct {
					Elem struct {
						Val uint32 `json:"val"`
					} `json:"elem"`
				}
				if err2 := json.Unmarshal(e, &w); err2 != nil {
					return nil, fmt.Errorf("set %s: element %s: %w", name, e, err)
				}
				n = w.Elem.Val
			}
			tags[n] = true
		}
	}
	return tags, nil
}
