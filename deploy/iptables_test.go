package deploy

import (
	"context"
	"strings"
	"testing"
)

const ipt1 = `*filter
:INPUT ACCEPT [0:0]
:kwl-in - [0:0]
-A INPUT -j kwl-in
-A kwl-in -p tcp --dport 1600 -m recent --set --name KWLDOOR --rsource -m comment --comment "t.kwl:2:1 knock" -j DROP
-A kwl-in -p tcp --dport 22 -m recent --rcheck --seconds 60 --name KWLDOOR --rsource -j ACCEPT
COMMIT
`

const ipt2 = `*filter
:INPUT ACCEPT [0:0]
:kwl-in - [0:0]
-A INPUT -j kwl-in
-A kwl-in -p tcp --dport 1600 -m recent --set --name KWLDOOR --rsource -j DROP
-A kwl-in -p tcp --dport 443 -j ACCEPT
-A kwl-in -p tcp --dport 22 -m recent --rcheck --seconds 30 --name KWLDOOR --rsource -j ACCEPT
COMMIT
`

// TestIptablesRedeploy pins the iptables path: the host's policy and
// rules stay, the jump is installed once, and a recent list the new
// ruleset still uses keeps its entries across the restore.
func TestIptablesRedeploy(t *testing.T) {
	ns := newNS(t, "ipt")
	if _, err := ns.Run("iptables", "-P", "INPUT", "DROP"); err != nil {
		t.Skipf("iptables: %v", err)
	}
	if _, err := ns.Run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	o := opts(t, ns)
	ctx := context.Background()
	if err := ApplyIptables(ctx, o, ipt1, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Run("sh", "-c", "echo +198.51.100.10 > /proc/net/xt_recent/KWLDOOR"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := ApplyIptables(ctx, o, ipt2, ""); err != nil {
			t.Fatal(err)
		}
	}
	save, _ := ns.Run("iptables", "-S")
	s := string(save)
	if strings.Count(s, "-A INPUT -j kwl-in") != 1 || !strings.Contains(s, "-P INPUT DROP") || !strings.Contains(s, "--dport 8080 -j ACCEPT") || !strings.Contains(s, "--dport 443") {
		t.Errorf("after redeploys:\n%s", s)
	}
	list, err := ns.Run("cat", "/proc/net/xt_recent/KWLDOOR")
	if err != nil || !strings.Contains(string(list), "198.51.100.10") {
		t.Errorf("recent list lost by the redeploy: %s %v", list, err)
	}
	if err := UndeployIptables(ctx, o); err != nil {
		t.Fatal(err)
	}
	save, _ = ns.Run("iptables", "-S")
	if s := string(save); strings.Contains(s, "kwl-in") || !strings.Contains(s, "--dport 8080 -j ACCEPT") || !strings.Contains(s, "-P INPUT DROP") {
		t.Errorf("after undeploy:\n%s", s)
	}
}
