package main

import (
	"context"
	"fmt"

	"kwl.dev/kwl/deploy"
)

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

func runUndeploy(env *cmdEnv, args []string) int {
	c := commands["undeploy"]
	fs := c.newFlags(env)
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	backend := fs.String("backend", "", "remove only the `nft` or iptables part (default both)")
	stateDir := fs.String("state-dir", deploy.DefaultStateDir, "directory of kwl's state")
	forceForeign := fs.Bool("force-foreign", false, "delete a table of that name that kwl did not create")
	recDir := recordDirFlag(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(env.stderr, "kwl undeploy: unexpected argument %q\nusage: %s\n", fs.Arg(0), c.usage)
		return exitUsage
	}
	o := deploy.Options{NetNS: *netns, Table: *table, StateDir: *stateDir, ForceForeign: *forceForeign}
	switch *backend {
	case "", "nft", "iptables":
	default:
		fmt.Fprintf(env.stderr, "kwl undeploy: unknown backend %q (nft or iptables)\n", *backend)
		return exitUsage
	}
	had := false
	if *backend != "iptables" {
		hadNft, err := deploy.Undeploy(context.Background(), o)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl undeploy: %v\n", err)
			return exitFail
		}
		had = had || hadNft
		if !hadNft && *backend == "nft" {
			fmt.Fprintf(env.stderr, "kwl undeploy: table inet %s is not loaded; nothing to do\n", *table)
		}
	}
	// iptables: kwl's chains, found in what iptables-save shows.
	if *backend != "nft" {
		hadIpt, code := undeployIptables(env, o)
		if code != exitOK {
			return code
		}
		switch {
		case *backend == "iptables" && !hadIpt:
			fmt.Fprintf(env.stderr, "kwl undeploy: kwl's iptables chains are not loaded; nothing to do\n")
		case !had && !hadIpt:
			fmt.Fprintf(env.stderr, "kwl undeploy: neither table inet %s nor kwl's iptables chains are loaded; nothing to do\n", *table)
		}
	}
	return recordUndeploy(env, *recDir, o, *backend)
}
