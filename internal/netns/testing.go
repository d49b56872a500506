package netns

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// KernelTestsRequired reports whether KWL_KERNEL_TESTS=1 asks that tests
// needing root and the kernel's tools fail instead of skipping, as CI does.
func KernelTestsRequired() bool { return os.Getenv("KWL_KERNEL_TESTS") == "1" }

// NeedRoot skips a test that needs root and the named tools (ip is always
// needed), or fails it when KernelTestsRequired.
func NeedRoot(t testing.TB, tools ...string) {
	t.Helper()
	why := ""
	if runtime.GOOS != "linux" {
		why = "kernel tests need Linux"
	} else if os.Geteuid() != 0 {
		why = "not root: kernel tests need root for network namespaces"
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = "kernel tests need " + tool
		}
	}
	if why == "" {
		return
	}
	if KernelTestsRequired() {
		t.Fatalf("%s (KWL_KERNEL_TESTS=1 makes this a failure)", why)
	}
	t.Skip(why + " (set KWL_KERNEL_TESTS=1 to make this a failure)")
}

// ForTest creates a namespace named after prefix, removed when the test
// ends; it skips or fails the test as NeedRoot does.
func ForTest(t testing.TB, prefix string) *NS {
	t.Helper()
	NeedRoot(t)
	ns, err := New(Group(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	return ns
}

// Answer listens on the TCP address addr inside ns and accepts every
// connection, closing it at once: a stand-in for a service (sshd) whose
// port a test connects to. The listener closes when the test ends.
func (ns *NS) Answer(t testing.TB, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}
