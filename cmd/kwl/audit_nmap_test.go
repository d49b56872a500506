//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kwl.dev/kwl/internal/netns"
)

// TestAuditNmap holds kwl audit's scan findings against real nmap scans:
// the seed's knock with its guard ports, deployed in a namespace, scanned
// over its loopback. kwl audit says that nmap's default scan (its 1,000
// most common TCP ports in random order, from nmap's own table) opens
// ssh for every scanner, since it knocks 1600 and neither guard port,
// and that a sweep in order (nmap -r), with its retransmissions, leaves
// ssh closed. After each real scan the test connects to ssh from the
// scanner's address.
func TestAuditNmap(t *testing.T) {
	netns.NeedRoot(t, "nft", "nmap")
	if _, err := os.Stat(defaultServices); err != nil {
		t.Skipf("nmap's table: %v", err)
	}
	const policy = "knock 1600 opens ssh for 60s\nclose ssh on 1599, 1601\n"
	file := filepath.Join(t.TempDir(), "seed.kwl")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, _ := kwlIn("audit", "--backend", "nft", "--trials", "200", file)
	for _, want := range []string{
		"random-order scan of the 1,000 most common TCP ports (nmap's default), which leaves out 1599 and 1601: OPENS ssh for 100.0% of 200 scanners",
		"ascending sweep of every TCP port: closed",
		"ascending sweep of every TCP port, each unanswered probe sent again 1s later (nmap's retransmission): closed",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("kwl audit does not say %q:\n%s", want, out)
		}
	}

	ns, sshOpen := loopbackSSH(t, "kwlc-nmap", file)
	if sshOpen() {
		t.Fatal("ssh answered before any scan")
	}
	for _, tc := range []struct {
		name  string
		args  []string
		opens bool
	}{
		{"nmap's default scan", []string{"-sS", "-Pn", "-n", "-T4", "127.0.0.1"}, true},
		{"a sweep in order", []string{"-sS", "-Pn", "-n", "-T4", "-r", "-p", "1-2000", "127.0.0.1"}, false},
	} {
		if out, err := ns.Run("nft", "flush", "set", "inet", "kwl", "door_ssh_4"); err != nil {
			t.Fatalf("flush the door set: %v %s", err, out)
		}
		if out, err := ns.Run("nmap", tc.args...); err != nil {
			t.Fatalf("nmap %s: %v\n%s", strings.Join(tc.args, " "), err, out)
		}
		if got := sshOpen(); got != tc.opens {
			t.Errorf("%s (nmap %s): ssh open %v after it, kwl audit says %v", tc.name, strings.Join(tc.args, " "), got, tc.opens)
		}
	}
}
