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
		short: "remove kwl's table from the kernel",
		long: `Undeploy removes kwl's table (inet kwl) and nothing else: other tables,
chains and sets of the host stay as they are. It deletes only a table
that kwl created (one with kwl's mark in its user data: nft list shows
comment "kwl policy ..."); whatever --table names, another table is
refused and left as it is. --force-foreign deletes it anyway (a table of
an older kwl, which had no mark). Undeploy waits for no deploy: while a
deploy waits for confirmation in the namespace, it holds the lock and
undeploy fails. With --backend iptables it removes the jumps to kwl's
chains and the chains. Undeploy needs root.

Undeploy also marks the record of the last deploy (/var/lib/kwl/deployed,
or --record-dir) as undeployed, so that kwl restore loads nothing at the
next boot: an intended undeploy is not undone.

Examples:

	kwl undeploy
	kwl undeploy --netns lab`,
		run: runUndeploy,
	})
}

func runUndeploy(env *cmdEnv, args []string) int {
	c := commands["undeploy"]
	fs := c.newFlags(env)
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	backend := fs.String("backend", "nft", "`nft` or iptables")
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
	case "nft":
		had, err := deploy.Undeploy(context.Background(), o)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl undeploy: %v\n", err)
			return exitFail
		}
		if !had {
			fmt.Fprintf(env.stderr, "kwl undeploy: table inet %s is not loaded; nothing to do\n", *table)
		}
	case "iptables":
		if err := deploy.UndeployIptables(context.Background(), o); err != nil {
			fmt.Fprintf(env.stderr, "kwl undeploy: %v\n", err)
			return exitFail
		}
	default:
		fmt.Fprintf(env.stderr, "kwl undeploy: unknown backend %q (nft or iptables)\n", *backend)
		return exitUsage
	}
	return recordUndeploy(env, *recDir, o, *backend)
}
