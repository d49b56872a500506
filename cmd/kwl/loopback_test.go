//go:build linux

package main

import (
	"net"
	"testing"
	"time"

	"kwl.dev/kwl/internal/netns"
)

// loopbackSSH returns a namespace of its own with its loopback up and a
// listener on 127.0.0.1:22 standing for sshd, with policy deployed there
// (nft), and a function that reports whether a connection to it from
// inside the namespace is accepted.
func loopbackSSH(t *testing.T, prefix, policy string) (ns *netns.NS, open func() bool) {
	t.Helper()
	ns = netns.ForTest(t, prefix)
	if out, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatalf("lo: %v %s", err, out)
	}
	ns.Answer(t, "127.0.0.1:22")
	if code, _, errs := kwlIn("deploy", "--state-dir", t.TempDir(), "--backend", "nft", "--netns", ns.Name, policy); code != exitOK {
		t.Fatalf("deploy: %d\n%s", code, errs)
	}
	return ns, func() bool {
		var c net.Conn
		err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp4", "127.0.0.1:22", 500*time.Millisecond); return })
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}
