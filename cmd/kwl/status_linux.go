//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/deploy/record"
)

func runStatus(env *cmdEnv, args []string) int {
	c := commands["status"]
	fs := c.newFlags(env)
	format := fs.String("format", "text", "output `format`: text, json or prometheus")
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	recDir := recordDirFlag(fs.FlagSet)
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
	dep := deployedInfo(record.DirFor(*recDir, *netns), st)
	if *format == "prometheus" {
		writeMetrics(env.stdout, st, ipt)
		return exitOK
	}
	if *format == "json" {
		out := struct {
			*deploy.State
			Deployed *deployed             `json:"deployed,omitempty"`
			Iptables *deploy.IptablesState `json:"iptables"`
		}{st, dep, ipt}
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(env.stdout, "%s\n", b)
		return loadedCode(st, ipt)
	}
	if dep != nil {
		fmt.Fprintf(env.stdout, "deployed: %s (sha256 %s) with the %s backend at %s, by kwl %s\n", dep.File, dep.SHA256, dep.Backend, dep.Time.Format(time.RFC3339), dep.Kwl)
		if !dep.Live {
			fmt.Fprintf(env.stdout, "warning: the live table is not the policy recorded at %s (changed since, or loaded by other means)\n", dep.Dir)
		}
		fmt.Fprintln(env.stdout)
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

// deployed is what the record of the last deploy says (kwl restore's
// record): the policy's file, hash and time, and whether the live nft
// table is that policy.
type deployed struct {
	File    string    `json:"file"`
	SHA256  string    `json:"sha256"`
	Backend string    `json:"backend"`
	Time    time.Time `json:"time"`
	Kwl     string    `json:"kwl"`
	// Live is set when the live table's mark names the recorded policy
	// (always, for the iptables backend, whose rules carry no mark).
	Live bool   `json:"live"`
	Dir  string `json:"-"`
}

// deployedInfo reads the record in dir; nil when there is none, or it
// says kwl was undeployed.
func deployedInfo(dir string, st *deploy.State) *deployed {
	if dir == "" {
		return nil
	}
	rec, err := record.Load(dir)
	if err != nil || rec == nil || rec.State != record.Deployed {
		return nil
	}
	d := &deployed{File: rec.File, SHA256: rec.SHA256, Backend: rec.Backend, Time: rec.Time, Kwl: rec.Kwl, Dir: dir, Live: true}
	if rec.Backend == "nft" {
		d.Live = st.Loaded && rec.SHA256 != "" && st.Policy != "" && strings.HasPrefix(rec.SHA256, strings.TrimPrefix(st.Policy, "sha256:"))
	}
	return d
}
