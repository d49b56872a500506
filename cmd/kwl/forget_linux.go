//go:build linux

package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"kwl.dev/kwl/deploy"
)

func runUnban(env *cmdEnv, args []string) int  { return runForget(env, "unban", "ban", args) }
func runRevoke(env *cmdEnv, args []string) int { return runForget(env, "revoke", "door", args) }

// runForget is kwl unban and kwl revoke: a source out of kwl's ban or
// door sets and lists, without a redeploy.
func runForget(env *cmdEnv, name, kind string, args []string) int {
	c := commands[name]
	fs := c.newFlags(env)
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	service := fs.String("service", "", "only the bans or doors of `SERVICE`")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help %s' for more.\n", c.usage, name)
		return exitUsage
	}
	src, err := parseSource(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl %s: %v\n", name, err)
		return exitUsage
	}
	removed, err := deploy.Forget(context.Background(), deploy.Options{NetNS: *netns, Table: *table}, kind, src, *service)
	for _, r := range removed {
		fmt.Fprintf(env.stdout, "%s: removed from %s\n", src, r)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl %s: %v\n", name, err)
		return exitFail
	}
	if len(removed) == 0 {
		what := map[string]string{"ban": "banned", "door": "let in by an open door"}[kind]
		fmt.Fprintf(env.stderr, "kwl %s: %s is not %s: nothing to do\n", name, src, what)
		return exitFail
	}
	return exitOK
}

// parseSource reads an address (a whole /32 or /128) or a prefix.
func parseSource(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
