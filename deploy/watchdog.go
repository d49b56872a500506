//go:build linux

package deploy

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"kwl.dev/kwl/deploy/nftnl"
)

// A deploy with a confirmation delay hands its rollback to a watchdog: a
// copy of the kwl binary started in a session of its own (setsid), so
// that neither a hang-up of the terminal nor a SIGKILL of the deploying
// process reaches it. The watchdog holds the namespace's deploy lock
// (the open file is passed to it), the namespace itself (an open handle
// on it), the previous table (a file in the state directory) and the
// confirmation socket (RunDir/netns-DEV-INO.sock). At the deadline,
// unless confirmed through the socket, it restores the previous table.
//
// The socket speaks lines. "applied" starts the delay (it started when
// the watchdog did, should the deployer die before saying it) and is
// answered "armed"; "confirm" keeps the new table, "rollback" restores
// the old one at once, "abort" says the new table was never loaded. Each
// of these three ends the watch, and every open connection is sent the
// outcome: "confirmed", "rolled back", "aborted" or "failed: REASON".

// watchdogEnv names the job file of a watchdog in its environment.
const watchdogEnv = "KWL_DEPLOY_WATCHDOG"

// The files a watchdog inherits, as ExtraFiles numbers them from 3.
const (
	wdLockFD   = 3
	wdListenFD = 4
	wdNetNSFD  = 5
)

// watchJob is what the deploying process tells its watchdog.
type watchJob struct {
	Family  nftables.TableFamily
	Table   string
	NetNS   string // for messages
	HasNS   bool   // wdNetNSFD is open
	Confirm time.Duration
	Started time.Time
	Socket  string
	Old     *snapshot // nil: there was no table, and rolling back deletes it
	// Iptables, when set, names the file of kwl's iptables rules as
	// they were (SaveIptables' form): the watchdog of an iptables deploy
	// restores them, not a table.
	Iptables string
}

// snapshot is a live table in a form that can be written to a file.
type snapshot struct {
	Table  netlink.Message
	Sets   []snapSet
	Chains []netlink.Message
	Rules  []netlink.Message
	Taken  time.Time
}

type snapSet struct {
	Msg   netlink.Message
	Elems []netlink.Message
}

func (l *live) snapshot() *snapshot {
	if l == nil {
		return nil
	}
	s := &snapshot{Table: l.table, Chains: l.chains, Rules: l.rules, Taken: l.taken}
	for _, ls := range l.sets {
		s.Sets = append(s.Sets, snapSet{Msg: ls.msg, Elems: ls.raw})
	}
	return s
}

func (s *snapshot) live(family nftables.TableFamily, name string) (*live, error) {
	if s == nil {
		return nil, nil
	}
	l := &live{family: family, name: name, table: s.Table, chains: s.Chains, rules: s.Rules, taken: s.Taken}
	var err error
	if l.info, err = parseTable(s.Table); err != nil {
		return nil, err
	}
	l.mark = parseMark(l.info.userdata)
	for _, ss := range s.Sets {
		ls, err := parseSet(ss.Msg)
		if err != nil {
			return nil, err
		}
		ls.raw = ss.Elems
		if err := ls.parseRaw(); err != nil {
			return nil, err
		}
		l.sets = append(l.sets, ls)
	}
	return l, nil
}

// watchdog is the deploying process's handle on its watchdog.
type watchdog struct {
	conn *net.UnixConn
	rd   *bufio.Reader
	job  string // the job file
}

// startWatchdog writes the job to the state directory and starts the
// watchdog, which takes over lk and t's namespace. It returns once the
// watchdog listens.
func startWatchdog(o *Options, lk *nsLock, t *target, job *watchJob) (*watchdog, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	dir := o.stateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	jf, err := os.CreateTemp(dir, "rollback-"+lk.key+"-*.gob")
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	jobPath := jf.Name()
	if err := gob.NewEncoder(jf).Encode(job); err != nil {
		jf.Close()
		os.Remove(jobPath)
		return nil, fmt.Errorf("writing the previous table to %s: %w", jobPath, err)
	}
	if err := jf.Close(); err != nil {
		os.Remove(jobPath)
		return nil, fmt.Errorf("writing the previous table to %s: %w", jobPath, err)
	}
	// The lock is held, so a socket file left there is a dead
	// watchdog's.
	os.Remove(job.Socket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: job.Socket, Net: "unix"})
	if err != nil {
		os.Remove(jobPath)
		return nil, fmt.Errorf("confirmation socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		os.Remove(job.Socket)
		os.Remove(jobPath)
		return nil, fmt.Errorf("confirmation socket: %w", err)
	}
	defer lf.Close()
	files := []*os.File{lk.f, lf}
	if t.nsfd >= 0 {
		fd, err := unix.Dup(t.nsfd)
		if err != nil {
			os.Remove(job.Socket)
			os.Remove(jobPath)
			return nil, fmt.Errorf("watchdog: %w", err)
		}
		nf := os.NewFile(uintptr(fd), "netns")
		defer nf.Close()
		files = append(files, nf)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "watchdog-"+lk.key+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		os.Remove(job.Socket)
		os.Remove(jobPath)
		return nil, fmt.Errorf("state directory: %w", err)
	}
	defer logf.Close()
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        []string{"kwl"},
		Env:         append(os.Environ(), watchdogEnv+"="+jobPath),
		Stdout:      logf,
		Stderr:      logf,
		ExtraFiles:  files,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		os.Remove(job.Socket)
		os.Remove(jobPath)
		return nil, fmt.Errorf("starting the watchdog: %w", err)
	}
	lk.handed = true
	lk.note(fmt.Sprintf("pid %d, waiting for confirmation", cmd.Process.Pid))
	cmd.Process.Release()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: job.Socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("confirmation socket: %w", err)
	}
	return &watchdog{conn: c, rd: bufio.NewReader(c), job: jobPath}, nil
}

// say sends one command and returns the answer line.
func (w *watchdog) say(cmd string) (string, error) {
	w.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer w.conn.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(w.conn, "%s\n", cmd); err != nil {
		return "", err
	}
	return w.answer()
}

func (w *watchdog) answer() (string, error) {
	line, err := w.rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// RunWatchdog runs the watchdog of a deploy waiting for confirmation when
// the process was started as one, and then exits; otherwise it returns at
// once. The kwl command calls it first thing.
func RunWatchdog() {
	jobPath := os.Getenv(watchdogEnv)
	if jobPath == "" {
		return
	}
	os.Unsetenv(watchdogEnv)
	if err := watch(jobPath); err != nil {
		fmt.Fprintf(os.Stderr, "%s kwl watchdog: %v\n", time.Now().Format(time.RFC3339), err)
		os.Exit(1)
	}
	os.Exit(0)
}

type wdEvent struct {
	cmd  string
	conn net.Conn
}

func watch(jobPath string) error {
	defer os.Remove(jobPath)
	f, err := os.Open(jobPath)
	if err != nil {
		return err
	}
	var job watchJob
	err = gob.NewDecoder(f).Decode(&job)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", jobPath, err)
	}
	defer os.Remove(job.Socket)
	if job.Iptables != "" {
		defer os.Remove(job.Iptables)
	}
	lf := os.NewFile(wdLockFD, "lock")
	defer lf.Close()
	ln, err := net.FileListener(os.NewFile(wdListenFD, "socket"))
	if err != nil {
		return fmt.Errorf("confirmation socket: %w", err)
	}
	defer ln.Close()
	t := &target{nsfd: -1}
	if job.HasNS {
		t.nsfd = wdNetNSFD
	}
	old, err := job.Old.live(job.Family, job.Table)
	if err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s kwl watchdog (table %s %s, network namespace %s): %s\n", time.Now().Format(time.RFC3339),
			nftnl.FamilyName(job.Family), job.Table, displayNS(job.NetNS), fmt.Sprintf(format, args...))
	}
	events := make(chan wdEvent)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			events <- wdEvent{conn: c} // known from now on, told the outcome
			go func() {
				rd := bufio.NewReader(c)
				for {
					line, err := rd.ReadString('\n')
					if err != nil {
						return
					}
					events <- wdEvent{cmd: strings.TrimSpace(line), conn: c}
				}
			}()
		}
	}()
	timer := time.NewTimer(time.Until(job.Started.Add(job.Confirm)))
	defer timer.Stop()
	conns := map[net.Conn]bool{}
	outcome := ""
	armed := false
	for outcome == "" {
		select {
		case <-timer.C:
			logf("no confirmation within %v: restoring the previous table", job.Confirm)
			outcome = "rollback"
		case ev := <-events:
			conns[ev.conn] = true
			switch ev.cmd {
			case "":
			case "applied":
				armed = true
				timer.Reset(job.Confirm)
				fmt.Fprintf(ev.conn, "armed\n")
			case "confirm":
				if !armed {
					// A confirmation proves something only once the
					// new ruleset is loaded.
					fmt.Fprintf(ev.conn, "failed: the new ruleset is not loaded yet\n")
					continue
				}
				outcome = ev.cmd
			case "rollback", "abort":
				outcome = ev.cmd
			default:
				fmt.Fprintf(ev.conn, "failed: unknown command %q\n", ev.cmd)
			}
		}
	}
	answer := ""
	switch outcome {
	case "confirm":
		logf("confirmed")
		answer = "confirmed"
	case "abort":
		answer = "aborted"
	case "rollback":
		var err error
		if job.Iptables != "" {
			// The watchdog holds the namespace's lock already.
			err = restoreIptablesFile(&Options{NetNS: job.NetNS}, job.Iptables)
		} else {
			err = rollback(t, job.Family, job.Table, old)
		}
		if err != nil {
			logf("rollback failed: %v", err)
			answer = "failed: " + err.Error()
		} else {
			logf("previous table restored")
			answer = "rolled back"
		}
	}
	// The socket goes before the lock: a deploy that gets the lock
	// never finds this watchdog's socket.
	ln.Close()
	os.Remove(job.Socket)
	// The lock is given back before the answer, so that the deployer's
	// next command finds it free.
	unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	for c := range conns {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		fmt.Fprintf(c, "%s\n", answer)
		c.Close()
	}
	if strings.HasPrefix(answer, "failed") {
		return errors.New(answer)
	}
	return nil
}
