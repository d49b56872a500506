//go:build linux

package deploy

import (
	"fmt"
	"os"
	"testing"

	"kwl.dev/kwl/internal/netns"
)

// TestMain runs the watchdog when started as one; otherwise it removes
// namespaces that an earlier, killed test run left
// behind (their creating process is gone), then runs the tests.
func TestMain(m *testing.M) {
	// A deploy with --confirm starts this binary as its watchdog.
	RunWatchdog()
	if arg := os.Getenv(childEnv); arg != "" {
		confirmChild(arg)
	}
	if os.Geteuid() == 0 {
		if gone, err := netns.RemoveStale("kwld"); err != nil {
			fmt.Fprintf(os.Stderr, "removing stale namespaces %v: %v\n", gone, err)
		}
	}
	os.Exit(m.Run())
}
