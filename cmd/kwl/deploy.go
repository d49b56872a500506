package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/lang"
)

// policyRuleset compiles a policy into nft ruleset data: lang.Load then
// nft.Lower. It prints the diagnostics of both (errors and the backend's
// warnings) to stderr with their source lines, and returns nil when the
// policy has errors.
func policyRuleset(env *cmdEnv, file string, src []byte) *nft.Ruleset {
	srcs := map[string][]byte{file: src}
	pol, diags := lang.Load(file, src)
	if diags.HasErrors() {
		printDiags(env, diags, srcs)
		return nil
	}
	rs, more := nft.Lower(pol)
	diags = append(diags, pol.Filter(more)...)
	printDiags(env, diags, srcs)
	if diags.HasErrors() || rs == nil {
		return nil
	}
	return rs
}

func init() {
	register(&command{
		name:  "deploy",
		usage: "kwl deploy [--dry-run] [--confirm DUR] [--netns NAME] [--table NAME] FILE\n       kwl deploy --confirm-now [--netns NAME]\n       kwl deploy --backend iptables [--dry-run] [--confirm DUR] [--netns NAME] FILE",
		short: "load the policy into the running kernel, atomically",
		long: `Deploy compiles FILE and loads it into the kernel.

The policy is read and compiled first, as kwl compile does: its errors
and the backend's warnings are printed with their lines, and a policy
with errors is not applied at all.

With the nft backend (the default) kwl talks netlink itself; the nft binary
is not needed. kwl owns one table, inet kwl, and never touches another
table, chain or set. The whole ruleset goes to the kernel as one batch, one
transaction: it is applied completely or not at all. If the kernel refuses
part of it, the previous ruleset stays in force and the error names the
policy statement whose rule was refused.

A redeploy keeps live state: every set of the loaded table whose name and
key type the new policy still has keeps its elements, each with the time it
had left (open doors, bans). Per-source limit buckets restart full, as a
new source's would: the kernel cannot report a bucket's tokens.
Established connections are never cut: conntrack does not depend on the
table, and the new table accepts them again.

--dry-run prints what would change (sets, chains and rules added, removed
or changed) and changes nothing.

--confirm DUR applies, then waits DUR for a confirmation: Enter on this
terminal, 'kwl deploy --confirm-now' from another shell, or SIGUSR1 to the
waiting process (its pid is in /run/kwl/confirm.pid). Without one in time,
or if the terminal hangs up (SIGHUP: a lost ssh session) or the process is
interrupted, the previous ruleset is restored with its state.

Only one deploy runs at a time (flock on /run/kwl/lock, one lock per
namespace). Deploy needs root (CAP_NET_ADMIN).

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

Exit status: 0 loaded (or, with --dry-run, compared), 1 errors in the
policy, a kernel that refused the ruleset, or a deploy rolled back for
want of confirmation, 2 bad usage or a file that could not be read.`,
		run: runDeploy,
	})
}

func runDeploy(env *cmdEnv, args []string) int {
	c := commands["deploy"]
	fs := c.newFlags(env)
	dry := fs.Bool("dry-run", false, "print what would change, change nothing")
	confirm := fs.Duration("confirm", 0, "roll back unless confirmed within `DUR`")
	confirmNow := fs.Bool("confirm-now", false, "confirm the deploy waiting for confirmation")
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	backend := fs.String("backend", "nft", "`nft` or iptables")
	stateDir := fs.String("state-dir", deploy.DefaultStateDir, "directory of the lock and pid files")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	o := deploy.Options{NetNS: *netns, Table: *table, StateDir: *stateDir, DryRun: *dry, Confirm: *confirm, Log: env.stderr}
	if *confirmNow {
		if fs.NArg() != 0 {
			fmt.Fprintf(env.stderr, "kwl deploy: --confirm-now takes no file\n")
			return exitUsage
		}
		if err := deploy.ConfirmNow(o); err != nil {
			fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
			return exitFail
		}
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
	// The policy is read and compiled before the kernel is touched: a
	// file that cannot be read (exit 2) or a policy with errors (exit 1)
	// changes nothing.
	file := fs.Arg(0)
	src, err := readSource(env, file)
	if err != nil {
		return ioError(env, "deploy", err)
	}
	if *backend == "iptables" {
		return deployIptables(env, o, file, src)
	}
	rs := policyRuleset(env, file, src)
	if rs == nil {
		fmt.Fprintf(env.stderr, "kwl deploy: %s has errors; nothing was applied\n", file)
		return exitFail
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if *confirm > 0 {
		confirmed := make(chan struct{}, 1)
		o.Confirmed = confirmed
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sigs)
		go func() {
			for s := range sigs {
				if s == syscall.SIGUSR1 {
					confirmed <- struct{}{}
					continue
				}
				cancel(fmt.Errorf("signal %v", s))
			}
		}()
		if f, ok := env.stdin.(*os.File); ok && isTerminal(f) {
			go func() {
				// Enter confirms; end of input (a closed terminal) does not.
				if _, err := bufio.NewReader(f).ReadString('\n'); err == nil {
					confirmed <- struct{}{}
				}
			}()
		}
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
	}
	return exitOK
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
