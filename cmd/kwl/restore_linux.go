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

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/deploy/record"
	"kwl.dev/kwl/lang"
)

// recordDirFlag defines --record-dir on fs.
func recordDirFlag(fs *flag.FlagSet) *string {
	return fs.String("record-dir", "", "record of the deploy for kwl restore, in `DIR` (default "+record.DefaultDir+"; none with --netns)")
}

// recordDir is the record directory of a command: the flag's value, else
// the default for the host's namespace, else "" (no record).
func recordDir(flagValue, netns string) string {
	if flagValue != "" || netns != "" {
		return flagValue
	}
	return record.DefaultDir
}

// recordDeploy records a deploy that succeeded, for kwl restore. The
// kernel has the new ruleset whatever happens here; a record that cannot
// be written is an error, since the next boot would load another policy.
func recordDeploy(env *cmdEnv, dirFlag string, o deploy.Options, backend, file string, src []byte) int {
	dir := recordDir(dirFlag, o.NetNS)
	if dir == "" {
		return exitOK
	}
	table := o.Table
	if table == "" {
		table = deploy.DefaultTable
	}
	pol, diags := lang.Load(file, src)
	if diags.HasErrors() {
		// Not reached: deploy compiled the same text.
		fmt.Fprintf(env.stderr, "kwl deploy: %s has errors; not recorded\n", file)
		return exitFail
	}
	name := file
	if abs, err := filepath.Abs(file); err == nil && file != "-" {
		name = abs
	}
	r := &record.Record{Backend: backend, Table: table, File: name, Text: src, Kwl: kwlVersion()}
	if err := record.Save(dir, r, record.ClosedOf(pol, backend, table, src)); err != nil {
		fmt.Fprintf(env.stderr, "kwl deploy: the ruleset is loaded, but the record for kwl restore was not written: %v\n", err)
		fmt.Fprintf(env.stderr, "kwl deploy: at boot, kwl restore would load what %s held before; fix it and deploy again (or --record-dir DIR)\n", dir)
		return exitFail
	}
	return exitOK
}

// recordUndeploy marks the record so that kwl restore loads nothing.
func recordUndeploy(env *cmdEnv, dirFlag string, o deploy.Options, backend string) int {
	dir := recordDir(dirFlag, o.NetNS)
	if dir == "" {
		return exitOK
	}
	table := o.Table
	if table == "" {
		table = deploy.DefaultTable
	}
	backends := []string{backend}
	if backend == "" { // both were removed
		backends = []string{"nft", "iptables"}
	}
	for _, b := range backends {
		marked, err := record.MarkUndeployed(dir, b, table, kwlVersion())
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl undeploy: the table is removed, but the record in %s still names it: %v\n", dir, err)
			fmt.Fprintf(env.stderr, "kwl undeploy: at boot, kwl restore would load it again; remove %s to prevent it\n", dir)
			return exitFail
		}
		if marked {
			break
		}
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
	dirFlag := recordDirFlag(fs)
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	stateDir := fs.String("state-dir", deploy.DefaultStateDir, "directory of the lock file")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(env.stderr, "kwl restore: unexpected argument %q\nusage: %s\n", fs.Arg(0), c.usage)
		return exitUsage
	}
	dir := recordDir(*dirFlag, *netns)
	if dir == "" {
		fmt.Fprintf(env.stderr, "kwl restore: --netns %s needs --record-dir: a deploy into a named namespace is recorded only there\n", *netns)
		return exitUsage
	}
	j := newJournal(env)
	o := deploy.Options{NetNS: *netns, StateDir: *stateDir}
	r, err := record.Load(dir)
	if err == nil && r.State == record.Undeployed {
		j.printf(prioInfo, "kwl was undeployed at %s (%s); nothing to restore", r.Time.Format(time.RFC3339), filepath.Join(dir, record.RecordFile))
		return exitOK
	}
	if err == nil {
		err = restorePolicy(env, j, o, r)
		if err == nil {
			return exitOK
		}
	} else if errors.Is(err, os.ErrNotExist) {
		err = fmt.Errorf("no record of a deploy: %w", err)
	}
	j.printf(prioErr, "error: the deployed policy was not restored: %v", err)
	return restoreClosed(env, j, o, dir)
}

// restorePolicy compiles the recorded policy and loads it.
func restorePolicy(env *cmdEnv, j *journal, o deploy.Options, r *record.Record) error {
	if v := kwlVersion(); r.Kwl != v {
		j.printf(prioNotice, "the policy was deployed by kwl %s and is compiled by kwl %s", r.Kwl, v)
	}
	o.Table = r.Table
	file := r.PolicyPath()
	pol, diags := lang.Load(file, r.Text)
	switch r.Backend {
	case "nft":
		var rs *nft.Ruleset
		if !diags.HasErrors() {
			var more lang.Diagnostics
			rs, more = nft.Lower(pol)
			diags = append(diags, pol.Filter(compile.With(pol, more))...)
		}
		if err := compileErrors(env, file, r.Text, diags); err != nil {
			return err
		}
		o.Policy, o.Guarded = policyID(r.Text), guarded(pol)
		if _, err := deploy.Apply(context.Background(), o, rs); err != nil {
			return err
		}
	case "iptables":
		var rs *iptables.Ruleset
		if !diags.HasErrors() {
			var more lang.Diagnostics
			rs, more = iptables.Lower(pol)
			diags = append(diags, pol.Filter(compile.With(pol, more))...)
		}
		if err := compileErrors(env, file, r.Text, diags); err != nil {
			return err
		}
		if _, err := deploy.ApplyIptables(context.Background(), o, rs); err != nil {
			return err
		}
	}
	j.printf(prioInfo, "restored %s (deployed from %s at %s, sha256 %.16s) with the %s backend", file, r.File, r.Time.Format(time.RFC3339), r.SHA256, r.Backend)
	return nil
}

// restoreClosed loads the fail-closed policy of dir. It returns exitFail
// either way: the deployed policy is not what is loaded.
func restoreClosed(env *cmdEnv, j *journal, o deploy.Options, dir string) int {
	c, err := record.LoadClosed(dir)
	if err == nil {
		err = loadClosed(env, o, c, filepath.Join(dir, record.ClosedFile))
	}
	if err != nil {
		j.printf(prioErr, "error: the fail-closed policy was not loaded either: %v", err)
		j.printf(prioErr, "error: NOTHING was loaded: guarded services are as open as the host's own firewall leaves them; run kwl deploy")
		return exitFail
	}
	except := ""
	if len(c.Allows) > 0 {
		except = " except from the sources of their allow statements"
	}
	j.printf(prioErr, "loaded the fail-closed policy instead (%s backend): new connections to %s are dropped%s; fix the record or run kwl deploy", c.Backend, c.Describe(), except)
	return exitFail
}

func loadClosed(env *cmdEnv, o deploy.Options, c *record.Closed, file string) error {
	pol, err := c.Policy(file)
	if err != nil {
		return err
	}
	o.Table = c.Table
	switch c.Backend {
	case "nft":
		rs, own := nft.Lower(pol)
		diags := compile.With(pol, own)
		if diags.HasErrors() || rs == nil {
			printDiags(env, diags, nil)
			return errors.New("the fail-closed policy does not compile")
		}
		o.Policy, o.Guarded = "fail-closed", guarded(pol)
		_, err = deploy.Apply(context.Background(), o, rs)
	case "iptables":
		rs, own := iptables.Lower(pol)
		diags := compile.With(pol, own)
		if diags.HasErrors() || rs == nil {
			printDiags(env, diags, nil)
			return errors.New("the fail-closed policy does not compile")
		}
		_, err = deploy.ApplyIptables(context.Background(), o, rs)
	}
	return err
}

// compileErrors prints the errors of diags with their source lines, and
// says that file has errors. Warnings were shown when the policy was
// deployed; they are not repeated at every boot.
func compileErrors(env *cmdEnv, file string, src []byte, diags lang.Diagnostics) error {
	var errs lang.Diagnostics
	for _, d := range diags {
		if d.Severity == lang.Error {
			errs = append(errs, d)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	printDiags(env, errs, map[string][]byte{file: src})
	return fmt.Errorf("%s has errors", file)
}
