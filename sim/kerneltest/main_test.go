//go:build linux

package kerneltest

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"kwl.dev/kwl/internal/netns"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Scenarios spend their time waiting for their packets' send times, not
	// computing: many run at once even on two cores.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		flag.Set("test.parallel", "64")
	}
	if os.Geteuid() == 0 {
		// Leftovers of a run that was killed (go test -timeout, SIGKILL).
		if gone, err := netns.RemoveStale(Prefix); err != nil {
			fmt.Fprintf(os.Stderr, "kerneltest: removing stale namespaces: %v\n", err)
		} else if len(gone) > 0 {
			fmt.Fprintf(os.Stderr, "kerneltest: removed %d stale namespaces: %s\n", len(gone), strings.Join(gone, " "))
		}
		// An interrupted run removes its namespaces before it exits.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			s := <-sig
			netns.RemoveAll()
			fmt.Fprintf(os.Stderr, "kerneltest: %v: namespaces removed\n", s)
			os.Exit(130)
		}()
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		// Nothing of this run may be left: every lab is deleted by the
		// test that made it, failed or not.
		mine := fmt.Sprintf("%s-p%dr", Prefix, os.Getpid())
		if left, _ := netns.List(mine); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "kerneltest: namespaces left behind: %s\n", strings.Join(left, " "))
			netns.RemoveAll()
			code = 1
		}
	}
	os.Exit(code)
}

// needRoot skips a test that needs root, or fails it when
// KWL_KERNEL_TESTS=1 says the kernel tests must run.
func needRoot(t *testing.T) { t.Helper(); netns.NeedRoot(t, "nft", "iptables") }

// checkGone fails the test if one of the named namespaces still exists
// (`ip netns list`).
func checkGone(t *testing.T, names ...string) {
	t.Helper()
	out, err := netns.ListOutput()
	if err != nil {
		t.Errorf("ip netns list: %v", err)
		return
	}
	for _, n := range names {
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == n {
				t.Errorf("namespace %s left behind", n)
			}
		}
	}
}
