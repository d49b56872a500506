//go:build linux

package deploy

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"

	"kwl.dev/kwl/compile"
)

// Forget removes a source from kwl's live state without a redeploy: from
// the ban sets and lists (kind "ban": the source is no longer banned) or
// the door sets and lists (kind "door": its doors close), of every
// service or of service alone, on both backends. A door or ban keyed by
// a prefix (per source/24) is named by that prefix (198.51.100.0/24). It
// returns the sets and lists the source was removed from; none is not an
// error.
func Forget(ctx context.Context, o Options, kind string, src netip.Prefix, service string) ([]string, error) {
	if kind != "ban" && kind != "door" {
		return nil, fmt.Errorf("deploy.Forget: kind %q", kind)
	}
	if err := check(); err != nil {
		return nil, err
	}
	src = src.Masked()
	addr := src.Addr().Unmap()
	v4 := addr.Is4()
	ours := func(name, prefix, fam string) bool { return forgets(name, prefix, kind, service, fam) }
	fam := "6"
	if v4 {
		fam = "4"
	}
	var removed []string

	// nft: delete the element from each set that holds it, in one batch.
	t, err := openTarget(o.NetNS)
	if err != nil {
		return nil, err
	}
	defer t.close()
	tab := &nftables.Table{Family: nftables.TableFamilyINet, Name: o.table()}
	l, err := t.readLive(tab.Family, tab.Name, false)
	if err != nil {
		return nil, err
	}
	var sets []*nftables.Set
	if l != nil {
		// A table kwl did not create is left as it is.
		if l.mark == nil {
			return nil, &ForeignTableError{Table: "inet " + tab.Name, What: "change"}
		}
		if sets, err = t.nft.GetSets(tab); err != nil {
			return nil, fmt.Errorf("read the sets of inet %s: %w", tab.Name, err)
		}
	}
	for _, s := range sets {
		if !ours(s.Name, "", fam) {
			continue
		}
		elems, err := t.nft.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		for _, e := range elems {
			if a, ok := netip.AddrFromSlice(e.Key); ok && a.Unmap() == addr {
				if err := t.nft.SetDeleteElements(s, []nftables.SetElement{{Key: e.Key}}); err != nil {
					return nil, err
				}
				removed = append(removed, "nft set "+s.Name)
			}
		}
	}
	if len(removed) > 0 {
		if err := t.nft.Flush(); err != nil {
			return nil, fmt.Errorf("delete %s from %s: %w", src, strings.Join(removed, ", "), err)
		}
	}

	// iptables: a "-ADDR" written to the list's /proc file removes it.
	ipt, err := IptablesStatus(ctx, o)
	if err != nil {
		return removed, err
	}
	for _, l := range ipt.Lists {
		if !ours(l.Name, "kwl_", fam) {
			continue
		}
		for _, e := range l.Entries {
			if a, err := netip.ParseAddr(e.Source); err == nil && a.Unmap() == addr {
				if _, err := o.run("-"+e.Source+"\n", "tee", "/proc/net/xt_recent/"+l.Name); err != nil {
					return removed, err
				}
				removed = append(removed, "iptables list "+l.Name)
			}
		}
	}
	sort.Strings(removed)
	return removed, nil
}

// forgets reports whether the set or list name (after prefix) is one
// Forget changes for kind, service (all when empty) and family fam ("4"
// or "6"). A name is KIND_ID_F: ID the statement's (the service's id,
// then _N for its Nth statement of the kind), F the family. A service is
// matched by its id exactly: ssh is not ssh_admin.
func forgets(name, prefix, kind, service, fam string) bool {
	rest, ok := strings.CutPrefix(name, prefix+kind+"_")
	if !ok {
		return false
	}
	if rest, ok = strings.CutSuffix(rest, "_"+fam); !ok {
		return false
	}
	id := compile.ServiceID(service)
	if service == "" || rest == id {
		return true
	}
	n, ok := strings.CutPrefix(rest, id+"_")
	return ok && n != "" && strings.Trim(n, "0123456789") == ""
}
