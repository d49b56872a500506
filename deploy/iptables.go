//go:build linux

package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"kwl.dev/kwl/compile/iptables"
)

// The iptables backend (ApplyIptables, UndeployIptables, IptablesStatus)
// finds kwl's rules in what iptables-save prints: the chains named kwl-*
// of every table, and the rules of the builtin chains that jump to them.
// Nothing else is read or changed, and nothing is recorded on the side,
// so undeploy and status find kwl's rules however they were loaded.
//
// A deploy is one iptables-restore --noflush run per family. Its input
// is written from the live rules: in each table it declares the new
// chains and the old ones (creating or flushing them), deletes the old
// jumps, fills the new chains, inserts the new jumps at the top of their
// builtin chains, and deletes the chains the new policy no longer has
// (a DNAT chain in nat included). Each table is one commit, so a table
// never shows a moment without its jump or with two.
//
// The families and tables are separate commits, so before it writes
// anything a deploy keeps a copy of kwl's rules of both families; when
// a commit fails it restores that copy in every family it started to
// change, and the error says so. The same copy serves --confirm.
//
// xt_recent lists (doors, limits, bans) survive a redeploy when the new
// ruleset still has rules on them: the kernel keeps a list while a rule
// uses it (net/netfilter/xt_recent.c frees it with its last rule), and
// the old rules are freed only once the commit has added the new ones.
// A list whose new rules want a larger ring (a higher --hitcount) is
// flushed by the kernel.

// iptablesInject, for tests, rewrites the input of a deploy's restore
// run (not of a rollback's) before it is sent.
var iptablesInject func(cmd, input string) string

// iptablesCmds are the families' commands, IPv4 first.
var iptablesCmds = [2]string{"iptables", "ip6tables"}

// nsPath is the file of the namespace o names, "" for the process's own.
func (o *Options) nsPath() string {
	if o.NetNS == "" || filepath.IsAbs(o.NetNS) {
		return o.NetNS
	}
	return filepath.Join(NetNSDir, o.NetNS)
}

// command runs a tool in the namespace of o: a namespace under
// /run/netns with ip netns exec, another one with nsenter.
func (o *Options) command(name string, args ...string) *exec.Cmd {
	switch p := o.nsPath(); {
	case p == "":
		return exec.Command(name, args...)
	case filepath.Dir(p) == NetNSDir:
		return exec.Command("ip", append([]string{"netns", "exec", filepath.Base(p), name}, args...)...)
	default:
		return exec.Command("nsenter", append([]string{"--net=" + p, "--", name}, args...)...)
	}
}

func (o *Options) run(stdin string, name string, args ...string) (string, error) {
	cmd := o.command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// readIptables reads kwl's part of both families' rules. A family whose
// tools are not installed is nil.
func readIptables(o *Options) ([2]*IptablesFamily, error) {
	var fams [2]*IptablesFamily
	if p := o.nsPath(); p != "" {
		if _, err := os.Stat(p); err != nil {
			return fams, fmt.Errorf("network namespace %s: %w", o.NetNS, err)
		}
	}
	for i, cmd := range iptablesCmds {
		if _, err := exec.LookPath(cmd + "-save"); err != nil {
			continue
		}
		out, err := o.run("", cmd+"-save", "-c")
		if err != nil {
			return fams, err
		}
		if fams[i], err = parseSave(cmd, out); err != nil {
			return fams, err
		}
	}
	return fams, nil
}

// load turns the live rules cur of family i into want.
func load(o *Options, i int, cur, want *IptablesFamily, inject bool) error {
	if cur == nil {
		cur = &IptablesFamily{Cmd: iptablesCmds[i]}
	}
	if want == nil {
		want = &IptablesFamily{Cmd: iptablesCmds[i]}
	}
	text, err := transaction(cur, want)
	if err != nil || text == "" {
		return err
	}
	if inject && iptablesInject != nil {
		text = iptablesInject(iptablesCmds[i], text)
	}
	if _, err := exec.LookPath(iptablesCmds[i] + "-restore"); err != nil {
		return fmt.Errorf("%s-restore is not installed, and the policy has %s rules", iptablesCmds[i], iptablesCmds[i])
	}
	_, err = o.run(text, iptablesCmds[i]+"-restore", "--noflush")
	return err
}

// restoreIptables brings back the copy saved of both families (kwl's
// chains and jumps as they were; the jumps at the top of their chains),
// in the families of only.
func restoreIptables(o *Options, saved [2]*IptablesFamily, only [2]bool) error {
	now, err := readIptables(o)
	if err != nil {
		return err
	}
	var errs []error
	// The family that holds kwl-keep comes last.
	for i := len(saved) - 1; i >= 0; i-- {
		if !only[i] {
			continue
		}
		want := saved[i]
		if want == nil {
			want = &IptablesFamily{Cmd: iptablesCmds[i]}
		}
		if err := load(o, i, now[i], want, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// keeperFamily is the family whose filter table holds kwl-keep: the
// first one whose tools are installed (recent lists are shared by the
// families, by name).
func keeperFamily(cur [2]*IptablesFamily) int {
	if cur[0] == nil {
		return 1
	}
	return 0
}

// change turns kwl's rules of both families from cur into want. While it
// runs, kwl-keep holds the recent lists of cur; when a commit fails it
// restores cur in the families it started to change. On success it
// returns a function that deletes kwl-keep, to call once a rollback to
// cur can no longer be needed.
func change(o *Options, cur, want [2]*IptablesFamily) (done func() error, rolledBack bool, err error) {
	k := keeperFamily(cur)
	held := [2]bool{cur[0].hasKeeper(), cur[1].hasKeeper()}
	if in := keeperInput(cur); in != "" {
		if _, err := o.run(in, iptablesCmds[k]+"-restore", "--noflush"); err != nil {
			return nil, false, fmt.Errorf("holding the recent lists: %w", err)
		}
		held[k] = true
	}
	drop := func() error { return dropKeeper(o, held) }
	var touched [2]bool
	for i := range want {
		touched[i] = true
		if err := load(o, i, cur[i], want[i], true); err != nil {
			if rerr := errors.Join(restoreIptables(o, cur, touched), drop()); rerr != nil {
				return nil, false, fmt.Errorf("%w; restoring kwl's rules as they were failed too: %v", err, rerr)
			}
			return nil, true, fmt.Errorf("%w; kwl's rules of both families are as they were", err)
		}
	}
	return drop, false, nil
}

// dropKeeper deletes kwl-keep in the families of which.
func dropKeeper(o *Options, which [2]bool) error {
	var errs []error
	for i, w := range which {
		if w {
			if _, err := o.run(dropKeeperInput, iptablesCmds[i]+"-restore", "--noflush"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// IptablesResult says what ApplyIptables did.
type IptablesResult struct {
	// Replaced is set when kwl's chains were loaded before.
	Replaced bool
	// Changes lists what differs between the live rules and the new ones,
	// one line each.
	Changes []string
	// Kept counts, per recent list the new ruleset still uses, the
	// entries it had before the deploy.
	Kept map[string]int
	// Confirmed is set when a confirmation arrived in time; RolledBack
	// when kwl's rules were restored as they were instead.
	Confirmed, RolledBack bool
}

// ApplyIptables loads rs, replacing kwl's iptables rules of both
// families; see the comment at the top of this file. With o.DryRun it
// only computes the changes; with o.Confirm it waits for confirmation as
// Apply does, and restores kwl's rules as they were without one.
func ApplyIptables(ctx context.Context, o Options, rs *iptables.Ruleset) (*IptablesResult, error) {
	if rs == nil {
		return nil, errors.New("empty iptables ruleset")
	}
	var want [2]*IptablesFamily
	for i, f := range [2]*iptables.Family{rs.V4, rs.V6} {
		var err error
		if want[i], err = familyOf([2]string{"iptables", "ip6tables"}[i], f); err != nil {
			return nil, err
		}
	}
	if err := check(); err != nil {
		return nil, err
	}
	lk, err := lockNS(&o)
	if err != nil {
		return nil, err
	}
	defer lk.end()
	cur, err := readIptables(&o)
	if err != nil {
		return nil, err
	}
	res := &IptablesResult{Kept: map[string]int{}}
	for i := range cur {
		if !cur[i].empty() {
			res.Replaced = true
		}
		if cur[i] == nil && !want[i].empty() {
			return nil, fmt.Errorf("%s-save is not installed, and the policy has %s rules", iptablesCmds[i], iptablesCmds[i])
		}
		res.Changes = append(res.Changes, changes(cur[i], want[i])...)
		// Refusals (a host chain using one of kwl's) come before any change.
		if _, err := transaction(cur[i], want[i]); err != nil {
			return res, err
		}
	}
	for name := range recentNames(want[0]) {
		res.Kept[name] = 0
	}
	for name := range recentNames(want[1]) {
		res.Kept[name] = 0
	}
	for name := range res.Kept {
		res.Kept[name] = recentEntries(&o, name)
	}
	if o.DryRun {
		return res, nil
	}
	var wd *watchdog
	if o.Confirm > 0 {
		// The watchdog runs before the new rules are loaded: whatever
		// happens to this process from here on, kwl's rules go back.
		file := IptablesRollbackFile(o)
		if err := writeIptablesFile(file, cur); err != nil {
			return res, err
		}
		wd, err = startWatchdog(&o, lk, &target{nsfd: -1}, &watchJob{
			NetNS: o.NetNS, Confirm: o.Confirm, Started: time.Now(), Socket: socketPath(lk.key), Iptables: file,
		})
		if err != nil {
			os.Remove(file)
			return res, err
		}
		defer wd.conn.Close()
	}
	done, rolledBack, err := change(&o, cur, want)
	res.RolledBack = rolledBack
	if err != nil {
		if wd != nil {
			// change rolled back what it had applied.
			wd.say("abort")
		}
		return res, err
	}
	if o.Confirm > 0 {
		// kwl-keep holds the old lists until the confirmation.
		err = awaitIptablesConfirm(ctx, &o, wd, cur, res)
	}
	if derr := done(); derr != nil && err == nil {
		err = fmt.Errorf("the new rules are loaded, but deleting %s failed: %w", keepChain, derr)
	}
	return res, err
}

// recentEntries counts the entries of a recent list (0 when it does not
// exist).
func recentEntries(o *Options, name string) int {
	out, err := o.run("", "cat", "/proc/net/xt_recent/"+name)
	if err != nil {
		return 0
	}
	return strings.Count(out, "src=")
}

// IptablesRollbackFile is where a deploy waiting for confirmation keeps
// the copy of kwl's iptables rules it restores without one, for another
// process (RestoreIptables) to restore if the deploy is killed.
func IptablesRollbackFile(o Options) string {
	return filepath.Join(o.stateDir(), "iptables-rollback"+o.suffix()+".json")
}

// awaitIptablesConfirm waits, through the watchdog, for a
// confirmation; without one in time, or when ctx ends (the terminal hung
// up), the watchdog restores saved. Should it vanish, this process
// restores saved itself.
func awaitIptablesConfirm(ctx context.Context, o *Options, wd *watchdog, saved [2]*IptablesFamily, res *IptablesResult) error {
	ans := confirmThrough(ctx, o, wd, "kwl's iptables chains")
	var err error
	res.Confirmed, res.RolledBack, err = settle(o, ans, func() error { return restoreIptables(o, saved, [2]bool{true, true}) })
	return err
}

// iptablesFile is the form of a saved copy of kwl's iptables rules.
type iptablesFile struct {
	Families []*IptablesFamily `json:"families"`
}

func writeIptablesFile(path string, fams [2]*IptablesFamily) error {
	var f iptablesFile
	for i, fam := range fams {
		if fam == nil {
			fam = &IptablesFamily{Cmd: iptablesCmds[i]}
		}
		f.Families = append(f.Families, fam)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save kwl's iptables rules: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save kwl's iptables rules: %w", err)
	}
	return nil
}

// SaveIptables writes kwl's iptables rules of both families (its chains
// and the jumps into them, nothing of the host's) to path, for
// RestoreIptables.
func SaveIptables(o Options, path string) error {
	if err := check(); err != nil {
		return err
	}
	release, err := lock(&o)
	if err != nil {
		return err
	}
	defer release()
	fams, err := readIptables(&o)
	if err != nil {
		return err
	}
	return writeIptablesFile(path, fams)
}

// RestoreIptables makes kwl's iptables rules of both families exactly
// what SaveIptables wrote to path: kwl's chains loaded since are
// deleted, the saved ones loaded, their jumps put back at the top of
// their builtin chains. The host's rules are not touched, and the recent
// lists that the saved rules use keep their entries.
func RestoreIptables(o Options, path string) error {
	if err := check(); err != nil {
		return err
	}
	release, err := lock(&o)
	if err != nil {
		return err
	}
	defer release()
	return restoreIptablesFile(&o, path)
}

// restoreIptablesFile is RestoreIptables for a caller that holds the
// namespace's lock.
func restoreIptablesFile(o *Options, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var f iptablesFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var saved [2]*IptablesFamily
	for _, fam := range f.Families {
		switch fam.Cmd {
		case "iptables":
			saved[0] = fam
		case "ip6tables":
			saved[1] = fam
		default:
			return fmt.Errorf("%s: unknown family command %q", path, fam.Cmd)
		}
	}
	if err := restoreIptables(o, saved, [2]bool{saved[0] != nil, saved[1] != nil}); err != nil {
		return err
	}
	// A deploy killed while it waited for confirmation leaves kwl-keep.
	now, err := readIptables(o)
	if err != nil {
		return err
	}
	return dropKeeper(o, [2]bool{now[0].hasKeeper(), now[1].hasKeeper()})
}

// UndeployIptables removes kwl's iptables chains and the jumps into them,
// in both families and every table, and nothing else. It reports whether
// there were any.
func UndeployIptables(ctx context.Context, o Options) (bool, error) {
	if err := check(); err != nil {
		return false, err
	}
	release, err := lock(&o)
	if err != nil {
		return false, err
	}
	defer release()
	cur, err := readIptables(&o)
	if err != nil {
		return false, err
	}
	had := false
	for i := range cur {
		if !cur[i].empty() {
			had = true
		}
		if _, err := transaction(cur[i], &IptablesFamily{Cmd: iptablesCmds[i]}); err != nil {
			return had, err
		}
	}
	if !had && !cur[0].hasKeeper() && !cur[1].hasKeeper() {
		return false, nil
	}
	done, _, err := change(&o, cur, [2]*IptablesFamily{})
	if err != nil {
		return had, err
	}
	return had, done()
}
