//go:build linux

package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// RunDir holds what must be found whatever --state-dir says: the deploy
// lock of each network namespace and the socket of a deploy waiting for
// confirmation. Both are named after the namespace's device and inode,
// so that every name of one namespace (ip netns's name, /proc/PID/ns/net,
// the namespace of the process) leads to the same lock and socket.
const RunDir = "/run/kwl"

// runDir is RunDir; tests that run without root may point it elsewhere.
var runDir = RunDir

// nsPath returns the file that names the namespace netns.
func nsPath(netns string) string {
	switch {
	case netns == "":
		return "/proc/self/ns/net"
	case filepath.IsAbs(netns):
		return netns
	}
	return filepath.Join(NetNSDir, netns)
}

// nsKey identifies the namespace netns by the device and inode of its
// nsfs file: "netns-DEV-INO".
func nsKey(netns string) (string, error) {
	var st unix.Stat_t
	p := nsPath(netns)
	if err := unix.Stat(p, &st); err != nil {
		return "", fmt.Errorf("network namespace %s: %w", displayNS(netns), err)
	}
	return fmt.Sprintf("netns-%d-%d", st.Dev, st.Ino), nil
}

func displayNS(netns string) string {
	if netns == "" {
		return "of this process"
	}
	return netns
}

// nsLock is the deploy lock of one namespace: an flock on an open file.
// The lock belongs to the open file, so a watchdog that inherits the file
// holds it after the deploying process has gone.
type nsLock struct {
	f    *os.File
	key  string
	path string
	// handed is set once a watchdog holds the lock: end then only
	// closes this process's copy of it.
	handed bool
}

// lockNS takes the deploy lock of o's namespace, failing at once if
// another kwl holds it.
func lockNS(o *Options) (*nsLock, error) {
	key, err := nsKey(o.NetNS)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	p := filepath.Join(runDir, key+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(p)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			h := strings.TrimSpace(string(holder))
			if h != "" {
				h = " (" + h + ")"
			}
			return nil, fmt.Errorf("another kwl deploy is running in network namespace %s%s: %s is locked; "+
				"a deploy waiting for confirmation holds it until it is confirmed or rolled back", displayNS(o.NetNS), h, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	l := &nsLock{f: f, key: key, path: p}
	l.note("pid " + strconv.Itoa(os.Getpid()))
	return l, nil
}

// note records who holds the lock, for the error of the next one.
func (l *nsLock) note(s string) {
	l.f.Truncate(0)
	l.f.WriteAt([]byte(s+"\n"), 0)
}

func (l *nsLock) release() {
	l.f.Truncate(0)
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}

// close closes this process's handle without unlocking: a watchdog that
// inherited the file keeps the lock.
func (l *nsLock) close() { l.f.Close() }

// end gives the lock back, or, when a watchdog holds it, closes this
// process's copy of it.
func (l *nsLock) end() {
	if l.handed {
		l.close()
	} else {
		l.release()
	}
}

// lock takes the deploy lock of o's namespace; release gives it back.
func lock(o *Options) (release func(), err error) {
	l, err := lockNS(o)
	if err != nil {
		return nil, err
	}
	return l.release, nil
}

// socketPath is where the watchdog of a deploy in namespace key waits
// for confirmation.
func socketPath(key string) string {
	return filepath.Join(runDir, key+".sock")
}
