//go:build linux

package main

import (
	"context"
	"fmt"
	"strings"

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
	recDir := recordDirFlag(fs.FlagSet)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(env.stderr, "kwl undeploy: unexpected argument %q\nusage: %s\n", fs.Arg(0), c.usage)
		return exitUsage
	}
	o := deploy.Options{NetNS: *netns, Table: *table, StateDir: *stateDir, ForceForeign: *forceForeign}
	loaders := deploy.Loaders()
	if *backend != "" {
		l, err := deploy.LoaderFor(*backend)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl undeploy: %v\n", err)
			return exitUsage
		}
		loaders = []deploy.Loader{l}
	}
	had := false
	var what []string
	for _, l := range loaders {
		h, err := l.Unload(context.Background(), o)
		if err != nil {
			fmt.Fprintf(env.stderr, "kwl undeploy: %v\n", err)
			return exitFail
		}
		had = had || h
		what = append(what, l.What(o))
	}
	switch {
	case had:
	case len(loaders) == 1:
		fmt.Fprintf(env.stderr, "kwl undeploy: %s; nothing to do\n", loaders[0].Missing(o))
	default:
		fmt.Fprintf(env.stderr, "kwl undeploy: neither %s are loaded; nothing to do\n", strings.Join(what, " nor "))
	}
	return recordUndeploy(env, *recDir, o, *backend)
}
