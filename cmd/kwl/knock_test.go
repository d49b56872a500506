//go:build linux

package main

import (
	"os/exec"
	"strings"
	"testing"

	"kwl.dev/kwl/internal/netns"
)

// TestKnockClient: kwl knock, run (1.2s between knocks: longer than the
// kernel's first SYN retransmission) in a namespace where examples/
// sequence.kwl is deployed, sends TCP 7000, UDP 8000 and TCP 9000 over
// its loopback and opens ssh there, each knock counted once: one SYN per
// TCP knock, no retransmission (the knock rules' counters).
func TestKnockClient(t *testing.T) {
	netns.NeedRoot(t, "nft")
	const policy = "../../examples/sequence.kwl"
	ns, ssh := loopbackSSH(t, "kwlc-knock", policy)
	if ssh() {
		t.Fatal("ssh answered before the knock")
	}
	kwl, _ := kwlAndPolicy(t, "")
	out, err := exec.Command("ip", "netns", "exec", ns.Name, kwl, "knock", "--policy", policy, "--gap", "1200ms", "127.0.0.1", "ssh").CombinedOutput()
	if err != nil {
		t.Fatalf("kwl knock: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "sent a SYN to tcp 127.0.0.1:9000") || !strings.Contains(string(out), "knocked: ssh") {
		t.Errorf("kwl knock said:\n%s", out)
	}
	if !ssh() {
		t.Fatalf("ssh closed after kwl knock:\n%s", out)
	}
	// Each knock reached the knock rules once: the counters of the rules
	// that drop the knocks.
	rules, err := ns.Run("nft", "list", "chain", "inet", "kwl", "knock")
	if err != nil {
		t.Fatalf("nft list: %v %s", err, rules)
	}
	for _, want := range []string{
		"tcp dport { 7000, 9000 } counter packets 2 ",
		"udp dport 8000 counter packets 1 ",
	} {
		if !strings.Contains(string(rules), want) {
			t.Errorf("no %q in the knock chain: one packet a knock, no retransmission\n%s", want, rules)
		}
	}
}
