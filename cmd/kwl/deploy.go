package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/lang"
)

// policyRuleset compiles a loaded policy into nft ruleset data with
// nft.Lower. It prints the diagnostics of the load and of the backend
// (errors and warnings) to stderr with their source lines, and returns
// nil when there are errors.
func policyRuleset(env *cmdEnv, file string, src []byte, pol *lang.Policy, diags lang.Diagnostics) *nft.Ruleset {
	srcs := map[string][]byte{file: src}
	rs, more := nft.Lower(pol)
	diags = append(diags, pol.Filter(compile.With(pol, more))...)
	printDiags(env, diags, srcs)
	if diags.HasErrors() || rs == nil {
		return nil
	}
	return rs
}

// statements counts the statements of pol that change what the
// firewall does.
func statements(pol *lang.Policy) int {
	return len(pol.Doors) + len(pol.Revokes) + len(pol.Limits) + len(pol.Allows)
}

// guarded lists the services pol guards with knocks.
func guarded(pol *lang.Policy) []string {
	var out []string
	for _, s := range pol.Services {
		if s.Guarded {
			out = append(out, s.Name)
		}
	}
	return out
}

// policyID identifies a policy's source in kwl's table mark.
func policyID(src []byte) string {
	h := sha256.Sum256(src)
	return "sha256:" + hex.EncodeToString(h[:8])
}

// refuseExposure refuses, before the kernel is touched, a policy that
// would expose what it means to guard: one with no statement (it would
// remove every guard), or one whose own tests fail on the backend. It
// prints why and returns false.
func refuseExposure(env *cmdEnv, file string, pol *lang.Policy, backend string, force bool) bool {
	if statements(pol) == 0 && !force {
		fmt.Fprintf(env.stderr, "kwl deploy: %s has no statement: deploying it would remove every guard kwl keeps; nothing was applied (kwl undeploy removes kwl's table; --force deploys an empty policy)\n", file)
		return false
	}
	if runTests == nil || len(pol.Tests) == 0 {
		return true
	}
	var out bytes.Buffer
	if runTests(&cmdEnv{stdin: env.stdin, stdout: &out, stderr: &out}, pol, []string{backend}) {
		for _, line := range strings.SplitAfter(out.String(), "\n") {
			if !strings.HasPrefix(line, "ok ") {
				io.WriteString(env.stderr, line)
			}
		}
		fmt.Fprintf(env.stderr, "kwl deploy: %s fails its own tests on the %s backend (kwl test --backend %s %s); nothing was applied\n", file, backend, backend, file)
		return false
	}
	return true
}

func init() {
	register(&command{
		name:  "deploy",
		usage: "kwl deploy [--dry-run] [--confirm DUR] [--netns NAME] [--table NAME] [--force] [--force-foreign] FILE\n       kwl deploy --confirm-now [--netns NAME]\n       kwl deploy --backend iptables [--dry-run] [--confirm DUR] [--netns NAME] FILE",
		short: "load the policy into the running kernel, atomically",
		long: `Deploy compiles FILE and loads it into the kernel.

The policy is read, compiled and tested first: its errors and the
backend's warnings are printed with their lines, and its test blocks run
in the simulator on the backend chosen, and a policy
with errors is not applied at all, nor one whose tests fail, nor one
with no statement (it would remove every guard: kwl undeploy says that
in words).

With the nft backend (the default) kwl talks netlink itself; the nft binary
is not needed. kwl owns one table, inet kwl, and never touches another
table, chain or set. The table it creates carries a mark in its user data
(nft list shows comment "kwl policy sha256:..."): the policy it came from
and the services it guards. Deploy replaces, and undeploy deletes, only a
table with that mark: whatever --table names, a table kwl did not create
(such as Debian's inet filter) is refused, and left byte for byte as it
was. --force-foreign takes it over anyway (a table of an older kwl,
which had no mark).

The whole ruleset goes to the kernel as one batch, one transaction: it is
applied completely or not at all. If the kernel refuses part of it, the
previous ruleset stays in force and the error names the policy statement
whose rule was refused.

A redeploy keeps live state: every set of the loaded table whose name and
key type the new policy still has keeps its elements, each with the time it
had left (open doors, bans). Per-source limit buckets restart full, as a
new source's would: the kernel cannot report a bucket's tokens.
Established connections are never cut: conntrack does not depend on the
table, and the new table accepts them again.

A redeploy that would leave a service the live table guards with knocks
unguarded (open to every source) is refused; --force deploys it anyway.

--dry-run prints what would change (sets, chains and rules added, removed
or changed) and changes nothing.

--confirm DUR loads the policy, then rolls it back after DUR unless it is
confirmed. Confirm from a NEW ssh session:

	kwl deploy --confirm-now [--netns NAME]

A new session proves that the new ruleset lets new connections in; the
session that deployed proves nothing, since conntrack keeps it alive
whatever the ruleset says. Enter on the deploying terminal confirms too.
The rollback is done by a watchdog, a kwl process in a session of its own
that holds the previous table (in the --state-dir directory, by default
/run/kwl): if the deploying process is killed, even with SIGKILL, or
the ssh session is lost, the previous ruleset, doors and bans included,
is back at the deadline. A hang-up (SIGHUP), Ctrl-C or SIGTERM of the
deploying process rolls back at once. The rollback restores kwl's table
and nothing else: changes made to other tables meanwhile stay.

Only one deploy or undeploy runs at a time in a network namespace,
however the namespace is named (--netns NAME, --netns /proc/PID/ns/net,
or none for the namespace kwl runs in): the lock is
/run/kwl/netns-DEV-INO.lock, after the namespace's device and inode, and a
deploy waiting for confirmation holds it until it is confirmed or rolled
back. --confirm-now finds the waiting deploy through the socket
/run/kwl/netns-DEV-INO.sock of the same namespace. Deploy needs root
(CAP_NET_ADMIN).

With --backend iptables, kwl reads its rules with iptables-save (the
chains named kwl-* of every table, both families, and the jumps into them
from the built-in chains) and runs iptables-restore --noflush once per
family with input written from them: in each table, one commit declares
the new chains, deletes the old jumps, fills the chains, inserts the new
jumps at the top and deletes the chains the policy no longer has (an old
DNAT chain in nat included). The host's rules and policies stay. Before
changing anything kwl keeps a copy of its rules of both families; if a
commit fails (say ip6tables-restore after iptables-restore succeeded), it
restores that copy and says so. The recent lists (doors, limits, bans)
keep their entries across a redeploy, a rollback and a confirm window:
while a change runs, a chain kwl-keep that nothing jumps to holds them.
--dry-run prints the chains and jumps that would be added (+), changed
(~) or removed (-) on stdout; --confirm and --confirm-now work as above,
and while kwl waits the copy is also in /run/kwl/iptables-rollback.json
(one per namespace), for deploy.RestoreIptables.

Examples:

	kwl deploy --dry-run policy.kwl
	kwl deploy --confirm 60s policy.kwl
	kwl deploy --backend iptables --dry-run policy.kwl
	kwl deploy --backend iptables --confirm 60s policy.kwl

A deploy that loads (and, with --confirm, is confirmed) is recorded for
kwl restore, which the systemd unit runs at boot: the policy text, its
hash and its fail-closed policy, in /var/lib/kwl/deployed (--record-dir;
with --netns, only with --record-dir). See kwl help restore.

Exit status: 0 loaded (or, with --dry-run, compared), 1 errors in the
policy, failing tests, a refused deploy, a kernel that refused the
ruleset, a deploy rolled back for want of confirmation, or a record that
could not be written; 2 bad usage or a file that could not be read.

Examples:

	kwl deploy --dry-run policy.kwl
	kwl deploy --confirm 60s policy.kwl       # then, from a new ssh session:
	kwl deploy --confirm-now
	kwl deploy --netns lab --confirm 10s policy.kwl`,
		run: runDeploy,
	})
}

func runDeploy(env *cmdEnv, args []string) int {
	c := commands["deploy"]
	fs := c.newFlags(env)
	dry := fs.Bool("dry-run", false, "print what would change, change nothing")
	confirm := fs.Duration("confirm", 0, "roll back unless confirmed within `DUR`")
	confirmNow := fs.Bool("confirm-now", false, "confirm the deploy waiting for confirmation in the namespace")
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME, or a path)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	backend := fs.String("backend", "nft", "`nft` or iptables")
	stateDir := fs.String("state-dir", deploy.DefaultStateDir, "directory of the previous table while a deploy waits for confirmation")
	force := fs.Bool("force", false, "deploy an empty policy, or one that unguards a service the live table guards")
	forceForeign := fs.Bool("force-foreign", false, "replace a table of that name that kwl did not create")
	recDir := recordDirFlag(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	o := deploy.Options{NetNS: *netns, Table: *table, StateDir: *stateDir, DryRun: *dry, Confirm: *confirm, Log: env.stderr,
		Force: *force, ForceForeign: *forceForeign}
	if *confirmNow {
		if fs.NArg() != 0 {
			fmt.Fprintf(env.stderr, "kwl deploy: --confirm-now takes no file\n")
			return exitUsage
		}
		if err := deploy.ConfirmNow(o); err != nil {
			fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(env.stderr, "kwl deploy: confirmed; the new ruleset stays\n")
		return exitOK
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(env.stderr, "kwl deploy: want one policy FILE, got %d arguments\nusage: %s\n", fs.NArg(), c.usage)
		return exitUsage
	}
	if *confirm < 0 {
		fmt.Fprintf(env.stderr, "kwl deploy: --confirm %v: the delay must be positive\n", *confirm)
		return exitUsage
	}
	switch *backend {
	case "nft", "iptables":
	default:
		fmt.Fprintf(env.stderr, "kwl deploy: unknown backend %q (nft or iptables)\n", *backend)
		return exitUsage
	}
	// The policy is read, compiled and tested before the kernel is
	// touched: a file that cannot be read (exit 2), a policy with errors
	// or failing tests (exit 1) changes nothing.
	file := fs.Arg(0)
	src, err := readSource(env, file)
	if err != nil {
		return ioError(env, "deploy", err)
	}
	pol, diags := lang.Load(file, src)
	if diags.HasErrors() {
		printDiags(env, diags, map[string][]byte{file: src})
		fmt.Fprintf(env.stderr, "kwl deploy: %s has errors; nothing was applied\n", file)
		return exitFail
	}
	if *backend == "iptables" {
		if !refuseExposure(env, file, pol, *backend, *force) {
			return exitFail
		}
		if code := deployIptables(env, o, file, src); code != exitOK {
			return code
		}
		return recordDeploy(env, *recDir, o, "iptables", file, src)
	}
	rs := policyRuleset(env, file, src, pol, diags)
	if rs == nil {
		fmt.Fprintf(env.stderr, "kwl deploy: %s has errors; nothing was applied\n", file)
		return exitFail
	}
	if !refuseExposure(env, file, pol, *backend, *force) {
		return exitFail
	}
	o.Policy, o.Guarded = policyID(src), guarded(pol)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if *confirm > 0 {
		var stop func()
		o.Confirmed, stop = confirmInput(env, cancel)
		defer stop()
	}
	res, err := deploy.Apply(ctx, o, rs)
	if res != nil && res.Changes != nil && *dry {
		res.Changes.Write(env.stdout)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
		return exitFail
	}
	if !*dry {
		kept := 0
		for _, n := range res.Kept {
			kept += n
		}
		fmt.Fprintf(env.stderr, "kwl deploy: table %s loaded (%d netlink messages in one transaction; %d set element(s) carried over)\n",
			res.Table, res.Messages, kept)
		return recordDeploy(env, *recDir, o, "nft", file, src)
	}
	return exitOK
}

// confirmInput returns the channel that confirms, from this process, a
// deploy waiting for confirmation: Enter on the terminal. SIGHUP, SIGINT
// and SIGTERM cancel ctx, which rolls back at once. (Confirmation from
// elsewhere, kwl deploy --confirm-now, goes to the watchdog's socket.)
// stop ends the signal handling.
func confirmInput(env *cmdEnv, cancel context.CancelCauseFunc) (confirmed <-chan struct{}, stop func()) {
	c := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			cancel(fmt.Errorf("signal %v", s))
		}
	}()
	if f, ok := env.stdin.(*os.File); ok && isTerminal(f) {
		go func() {
			// Enter confirms; end of input (a closed terminal) does not.
			if _, err := bufio.NewReader(f).ReadString('\n'); err == nil {
				c <- struct{}{}
			}
		}()
	}
	return c, func() { signal.Stop(sigs) }
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
