package main

func init() {
	register(&command{
		name:  "undeploy",
		usage: "kwl undeploy [--netns NAME] [--table NAME] [--force-foreign] [--backend nft|iptables]",
		short: "remove kwl's table and chains from the kernel",
		long: `Undeploy removes kwl's table (inet kwl) and nothing else: other tables,
chains and sets of the host stay as they are. It deletes only a table
that kwl created (one with kwl's mark in its user data: nft list shows
comment "kwl policy ..."); whatever --table names, another table is
refused and left as it is. --force-foreign deletes it anyway (a table of
an older kwl, which had no mark). Undeploy waits for no deploy: while a
deploy waits for confirmation in the namespace, it holds the lock and
undeploy fails. Undeploy needs root.

It also removes kwl's iptables rules, however they were loaded (kwl
deploy --backend iptables, or iptables-restore of kwl compile's output):
the chains named kwl-* of every table (filter, nat, ...) of both families,
and the rules of the built-in chains that jump to them, as iptables-save
shows them. The host's own rules and policies stay. A chain of the host
that jumps into kwl's chains stops it before anything changes. --backend
nft or iptables removes only that backend's part.

Undeploy also marks the record of the last deploy (/var/lib/kwl/deployed,
or --record-dir) as undeployed, so that kwl restore loads nothing at the
next boot: an intended undeploy is not undone.

Examples:

	kwl undeploy
	kwl undeploy --netns lab
	kwl undeploy --netns lab --backend iptables`,
		run: runUndeploy,
	})
}
