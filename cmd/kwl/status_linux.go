//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"

	"kwl.dev/kwl/deploy"
)

func runStatus(env *cmdEnv, args []string) int {
	c := commands["status"]
	fs := c.newFlags(env)
	format := fs.String("format", "text", "output `format`: text, json or prometheus")
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(env.stderr, "kwl status: unexpected argument %q\nusage: %s\n", fs.Arg(0), c.usage)
		return exitUsage
	}
	if *format != "text" && *format != "json" && *format != "prometheus" {
		fmt.Fprintf(env.stderr, "kwl status: unknown format %q (text, json or prometheus)\n", *format)
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
	if *format == "prometheus" {
		writeMetrics(env.stdout, st, ipt)
		return exitOK
	}
	if *format == "json" {
		out := struct {
			*deploy.State
			Iptables *deploy.IptablesState `json:"iptables"`
		}{st, ipt}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(env.stdout, "%s\n", b)
		return loadedCode(st, ipt)
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
	return loadedCode(st, ipt)
}

// loadedCode is status's exit code: 1 when no rules of kwl's are loaded,
// as systemctl is-active says, so that a script or a monitor can tell.
// (The prometheus format says it in kwl_loaded and exits 0.)
func loadedCode(st *deploy.State, ipt *deploy.IptablesState) int {
	if !st.Loaded && !ipt.Loaded {
		return exitFail
	}
	return exitOK
}
