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
root (reading the ruleset needs CAP_NET_ADMIN).

Kwl's iptables rules are shown too, however they were loaded: the chains
named kwl-* of every table of both families with their rule and packet
counts, the jumps into them from the built-in chains, and the recent
lists their rules use (doors, limits, bans) with each source and the
number of stamps it has there. In JSON they are the "iptables" member.

Examples:

	kwl status
	kwl status --netns lab --format json`,
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
	// iptables: kwl's chains, found in what iptables-save shows.
	ipt, err := deploy.IptablesStatus(context.Background(), deploy.Options{NetNS: *netns})
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl status: %v\n", err)
		return exitFail
	}
	if *format == "json" {
		out := struct {
			*deploy.State
			Iptables *deploy.IptablesState `json:"iptables"`
		}{st, ipt}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(env.stdout, "%s\n", b)
		return exitOK
	}
	if st.Loaded || !ipt.Loaded {
		st.Write(env.stdout)
	}
	if ipt.Loaded {
		if st.Loaded {
			fmt.Fprintln(env.stdout)
		}
		ipt.Write(env.stdout)
	} else if !st.Loaded {
		ipt.Write(env.stdout)
	}
	return exitOK
}
