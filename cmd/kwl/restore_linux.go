//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/deploy/record"
	"kwl.dev/kwl/lang"
)

// recordDirFlag defines --record-dir on fs.
func recordDirFlag(fs *flag.FlagSet) *string {
	return fs.String("record-dir", "", "record of the deploy for kwl restore, in `DIR` (default "+record.DefaultDir+"; none with --netns)")
}

// recordDeploy records a deploy that succeeded, for kwl restore. The
// kernel has the new ruleset whatever happens here; a record that cannot
// be written is an error, since the next boot would load another policy.
func recordDeploy(env *cmdEnv, dirFlag string, o deploy.Options, backend, file string, src []byte, pol *lang.Policy) int {
	dir := record.DirFor(dirFlag, o.NetNS)
	if dir == "" {
		return exitOK
	}
	if err := deploy.RecordDeploy(dir, o, backend, file, src, pol, kwlVersion()); err != nil {
		fmt.Fprintf(env.stderr, "kwl deploy: the ruleset is loaded, but the record for kwl restore was not written: %v\n", err)
		fmt.Fprintf(env.stderr, "kwl deploy: at boot, kwl restore would load what %s held before; fix it and deploy again (or --record-dir DIR)\n", dir)
		return exitFail
	}
	return exitOK
}

// recordUndeploy marks the record so that kwl restore loads nothing.
func recordUndeploy(env *cmdEnv, dirFlag string, o deploy.Options, backend string) int {
	dir := record.DirFor(dirFlag, o.NetNS)
	if dir == "" {
		return exitOK
	}
	if err := deploy.RecordUndeploy(dir, o, backend, kwlVersion()); err != nil {
		fmt.Fprintf(env.stderr, "kwl undeploy: the table is removed, but the record in %s still names it: %v\n", dir, err)
		fmt.Fprintf(env.stderr, "kwl undeploy: at boot, kwl restore would load it again; remove %s to prevent it\n", dir)
		return exitFail
	}
	return exitOK
}

// journal writes messages, prefixed with their syslog priority ("<3>")
// when stderr is systemd's journal stream, so that journalctl shows
// errors as errors.
type journal struct {
	w  io.Writer
	on bool
}

func newJournal(env *cmdEnv) *journal {
	return &journal{w: env.stderr, on: env.stderr == os.Stderr && isJournal(os.Stderr)}
}

// isJournal reports whether f is the stream systemd connected to the
// journal: JOURNAL_STREAM holds its "device:inode" (systemd.exec(5)).
func isJournal(f *os.File) bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return dev == strconv.FormatUint(uint64(st.Dev), 10) && ino == strconv.FormatUint(st.Ino, 10)
}

const (
	prioErr    = 3
	prioNotice = 5
	prioInfo   = 6
)

func (j *journal) printf(prio int, format string, args ...any) {
	if j.on {
		fmt.Fprintf(j.w, "<%d>", prio)
	}
	fmt.Fprintf(j.w, "kwl restore: "+format+"\n", args...)
}

func runRestore(env *cmdEnv, args []string) int {
	c := commands["restore"]
	fs := c.newFlags(env)
	dirFlag := recordDirFlag(fs.FlagSet)
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	stateDir := fs.String("state-dir", deploy.DefaultStateDir, "directory of the lock file")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(env.stderr, "kwl restore: unexpected argument %q\nusage: %s\n", fs.Arg(0), c.usage)
		return exitUsage
	}
	dir := record.DirFor(*dirFlag, *netns)
	if dir == "" {
		fmt.Fprintf(env.stderr, "kwl restore: --netns %s needs --record-dir: a deploy into a named namespace is recorded only there\n", *netns)
		return exitUsage
	}
	j := newJournal(env)
	res := deploy.Restore(context.Background(), deploy.Options{NetNS: *netns, StateDir: *stateDir}, dir)
	if r := res.Record; r != nil {
		if r.State == record.Undeployed {
			j.printf(prioInfo, "kwl was undeployed at %s (%s); nothing to restore", r.Time.Format(time.RFC3339), filepath.Join(dir, record.RecordFile))
			return exitOK
		}
		if v := kwlVersion(); r.Kwl != v {
			j.printf(prioNotice, "the policy was deployed by kwl %s and is compiled by kwl %s", r.Kwl, v)
		}
		if res.Err == nil {
			j.printf(prioInfo, "restored %s (deployed from %s at %s, sha256 %.16s) with the %s backend", r.PolicyPath(), r.File, r.Time.Format(time.RFC3339), r.SHA256, r.Backend)
			return exitOK
		}
	}
	policyError(env, res.Err)
	j.printf(prioErr, "error: the deployed policy was not restored: %v", res.Err)
	if res.ClosedErr != nil {
		policyError(env, res.ClosedErr)
		j.printf(prioErr, "error: the fail-closed policy was not loaded either: %v", res.ClosedErr)
		j.printf(prioErr, "error: NOTHING was loaded: guarded services are as open as the host's own firewall leaves them; run kwl deploy")
		return exitFail
	}
	closed := res.Closed
	except := ""
	if len(closed.Allows) > 0 {
		except = " except from the sources of their allow statements"
	}
	j.printf(prioErr, "loaded the fail-closed policy instead (%s backend): new connections to %s are dropped%s; fix the record or run kwl deploy", closed.Backend, closed.Describe(), except)
	return exitFail
}

// policyError prints the diagnostics of a policy that kwl restore could
// not compile.
func policyError(env *cmdEnv, err error) {
	var pe *deploy.PolicyError
	if errors.As(err, &pe) {
		printDiags(env, pe.Diags, map[string][]byte{pe.File: pe.Src})
	}
}
