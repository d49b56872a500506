//go:build linux

package netns

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) { t.Helper(); NeedRoot(t) }

func TestNewDoDelete(t *testing.T) {
	needRoot(t)
	name := Group("kwlnt") + "-a"
	ns, err := New(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Delete() })
	var inode, self uint64
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	self = st.Ino
	if err := ns.Do(func() error {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return err
		}
		inode = st.Ino
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inode == self {
		t.Fatalf("Do ran in the test's own namespace")
	}
	out, err := ns.Run("ip", "-o", "link", "show", "lo")
	if err != nil || !strings.Contains(string(out), "UP") {
		t.Fatalf("lo not up: %s %v", out, err)
	}
	if err := ns.Delete(); err != nil {
		t.Fatal(err)
	}
	if names, _ := List(name); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}
}

func TestStale(t *testing.T) {
	needRoot(t)
	// A namespace named after a pid that cannot exist is stale; one named
	// after this process is not.
	dead := "kwlnt-p999999999r000000-x"
	mine := Group("kwlnt") + "-x"
	for _, n := range []string{dead, mine} {
		if _, err := New(n); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { del(dead); del(mine) })
	removed, err := RemoveStale("kwlnt")
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != dead {
		t.Fatalf("RemoveStale = %v, want [%s]", removed, dead)
	}
	if names, _ := List(mine); len(names) != 1 {
		t.Fatalf("removed a live namespace: %v", names)
	}
}
