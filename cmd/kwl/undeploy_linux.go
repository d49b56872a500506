//go:build linux

package main

import (
	"context"
	"fmt"

	"kwl.dev/kwl/deploy"
)

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
		hadIpt, err := deploy.UndeployIptables(context.Background(), o)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl undeploy: %v\n", err)
			return exitFail
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
