// Package netns creates and removes named network namespaces for tests
// that need a private kernel network stack (the differential kernel suite
// in sim/kerneltest), runs commands and Go code inside them, and removes
// what an interrupted run left behind.
//
// Namespaces are named "<prefix>-p<pid>r<random>-<role>" and created with
// `ip netns add`, so they appear under /run/netns and in `ip netns list`.
// The pid in the name lets a later run tell leftovers of a dead process
// from the namespaces of a run still in progress (Stale, RemoveStale).
//
// Go code runs inside a namespace on a locked OS thread that has joined it
// with setns(2) (Do). Sockets created there stay in the namespace for their
// whole life, whatever thread later uses them, so a test creates its
// sockets inside Do and uses them from ordinary goroutines. The thread is
// never unlocked: when the goroutine returns, the Go runtime ends the
// thread instead of reusing it in the wrong namespace.
package netns

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Dir is where `ip netns` keeps its namespace handles.
const Dir = "/run/netns"

// NS is a named network namespace.
type NS struct {
	Name string
}

// live holds the namespaces this process created and has not deleted yet,
// so that an interrupt handler can remove them (RemoveAll).
var live = struct {
	sync.Mutex
	m      map[string]bool
	closed bool // set by RemoveAll: no namespace may be created any more
}{m: map[string]bool{}}

// Group returns a fresh name stem "<prefix>-p<pid>r<random>" for a set of
// namespaces that belong together; roles are appended by New.
func Group(prefix string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return fmt.Sprintf("%s-p%dr%s", prefix, os.Getpid(), hex.EncodeToString(b[:]))
}

// New creates the namespace named name with its loopback up.
func New(name string) (*NS, error) {
	// Registered before it exists, so that RemoveAll, running at any
	// moment from a signal handler, also removes one being created.
	live.Lock()
	if live.closed {
		live.Unlock()
		return nil, fmt.Errorf("ip netns add %s: shutting down", name)
	}
	live.m[name] = true
	live.Unlock()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		live.Lock()
		delete(live.m, name)
		live.Unlock()
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	ns := &NS{Name: name}
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Delete removes the namespace. Interfaces inside it (veth ends) go with
// it; a veth whose peer is in another namespace is removed as a pair.
func (ns *NS) Delete() error {
	live.Lock()
	delete(live.m, ns.Name)
	live.Unlock()
	return del(ns.Name)
}

func del(name string) error {
	out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Run runs a command inside the namespace (`ip netns exec`) and returns its
// standard output; the error carries standard error.
func (ns *NS) Run(name string, args ...string) ([]byte, error) {
	return ns.RunInput(nil, name, args...)
}

// RunInput is Run with the given standard input.
func (ns *NS) RunInput(stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s in %s: %v: %s", name, strings.Join(args, " "), ns.Name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// List returns the names of the namespaces whose name starts with prefix.
func List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(Dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Stale returns the namespaces with the given prefix whose creating process
// is gone: its pid (from the name, see Group) is not running, or the
// process running under that pid started after the namespace was made.
func Stale(prefix string) ([]string, error) {
	names, err := List(prefix + "-p")
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, name := range names {
		rest := strings.TrimPrefix(name, prefix+"-p")
		i := strings.IndexByte(rest, 'r')
		if i <= 0 {
			continue
		}
		pid, err := strconv.Atoi(rest[:i])
		if err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join(Dir, name))
		if err != nil {
			continue
		}
		if !alive(pid, fi.ModTime()) {
			stale = append(stale, name)
		}
	}
	return stale, nil
}

// alive reports whether pid runs a process that started no later than t
// (plus a second of slack for the clock's granularity).
func alive(pid int, t time.Time) bool {
	start, err := procStart(pid)
	if err != nil {
		return false
	}
	return !start.After(t.Add(time.Second))
}

// procStart returns when process pid started: field 22 of /proc/PID/stat
// counts clock ticks (USER_HZ, 100 on Linux) since boot, and /proc/stat's
// btime is the boot time in seconds since the epoch (proc(5)).
func procStart(pid int) (time.Time, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return time.Time{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64) // field 22; f[0] is field 3
	if err != nil {
		return time.Time{}, err
	}
	ps, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(ps), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			btime, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, err
			}
			const userHZ = 100
			return time.Unix(btime, 0).Add(time.Duration(ticks) * time.Second / userHZ), nil
		}
	}
	return time.Time{}, fmt.Errorf("/proc/stat: no btime")
}

// RemoveStale deletes the namespaces Stale finds and returns their names.
func RemoveStale(prefix string) ([]string, error) {
	stale, err := Stale(prefix)
	if err != nil {
		return nil, err
	}
	var errs []string
	for _, name := range stale {
		if err := del(name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return stale, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return stale, nil
}

// RemoveAll deletes every namespace this process created and has not
// deleted yet, and stops New from creating more; an interrupt handler
// calls it before exiting. A namespace whose `ip netns add` is still
// running is waited for and removed too.
func RemoveAll() {
	live.Lock()
	live.closed = true
	live.Unlock()
	for round := 0; round < 3; round++ {
		live.Lock()
		names := make([]string, 0, len(live.m))
		for name := range live.m {
			names = append(names, name)
		}
		live.Unlock()
		for _, name := range names {
			if del(name) == nil || !exists(name) {
				live.Lock()
				delete(live.m, name)
				live.Unlock()
			}
		}
		live.Lock()
		n := len(live.m)
		live.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func exists(name string) bool {
	_, err := os.Stat(filepath.Join(Dir, name))
	return err == nil
}

// ListOutput returns the output of `ip netns list`, for checks that
// nothing is left behind.
func ListOutput() (string, error) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	return string(out), err
}
