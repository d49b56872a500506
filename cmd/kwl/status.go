package main

import (
	"context"
	"encoding/json"
	"fmt"

	"kwl.dev/kwl/deploy"
)

func init() {
	register(&command{
		name:  "status",
		usage: "kwl status [--format text|json] [--netns NAME] [--table NAME]",
		short: "show the live doors, limits and bans",
		long: `Status shows what kwl's table holds now: every set with its elements
(open doors per source, limit buckets and bans) and the time each has left,
and the rule counters. --format json prints one JSON object. Status needs
root (reading the ruleset needs CAP_NET_ADMIN).`,
		run: runStatus,
	})
}

func runStatus(env *cmdEnv, args []string) int {
	c := commands["status"]
	fs := c.newFlags(env)
	format := fs.String("format", "text", "output `format`: text or json")
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(env.stderr, "kwl status: unexpected argument %q\nusage: %s\n", fs.Arg(0), c.usage)
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(env.stderr, "kwl status: unknown format %q (text or json)\n", *format)
		return exitUsage
	}
	st, err := deploy.Status(context.Background(), deploy.Options{NetNS: *netns, Table: *table})
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl status: %v\n", err)
		return exitFail
	}
	if *format == "json" {
		b, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintf(env.stdout, "%s\n", b)
		return exitOK
	}
	st.Write(env.stdout)
	return exitOK
}
