//go:build linux

package deploy

import (
	"reflect"
	"testing"
)

// TestIptablesStatements: the counters of the rules that decide are added
// up by their comment over both families; rules that go on do not count.
func TestIptablesStatements(t *testing.T) {
	rule := func(r string, p, b uint64) IptablesRule { return IptablesRule{Rule: r, Packets: p, Bytes: b} }
	fam := func(rs ...IptablesRule) *IptablesFamily {
		return &IptablesFamily{Tables: []*IptablesTable{{Name: "filter", Chains: []IptablesChain{{Name: "kwl-svc-ssh", Rules: rs}}}}}
	}
	got := iptablesStatements([]*IptablesFamily{
		fam(rule(`-m conntrack --ctstate NEW -m comment --comment "knock ssh, line 4" -j ACCEPT`, 3, 180),
			rule(`-m comment --comment "knock ssh, line 4" -j DROP`, 5, 300),
			rule(`-m recent --set --name kwl_lim_ssh_4 --rsource -m comment --comment "limit ssh, line 6"`, 9, 540),
			rule(`-m comment --comment "limit ssh, line 6" -j REJECT --reject-with tcp-reset`, 2, 120)),
		fam(rule(`-m comment --comment "knock ssh, line 4" -j ACCEPT`, 1, 80),
			rule(`-j kwl-knock`, 7, 7)),
	})
	want := []StatementState{
		{Statement: "knock ssh, line 4", AdmittedPackets: 4, AdmittedBytes: 260, RefusedPackets: 5, RefusedBytes: 300},
		{Statement: "limit ssh, line 6", RefusedPackets: 2, RefusedBytes: 120},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("iptablesStatements:\n got %+v\nwant %+v", got, want)
	}
}
