package main

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
