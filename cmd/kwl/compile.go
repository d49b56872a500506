package main

import (
	"fmt"
	"io"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
)

func runCompile(env *cmdEnv, args []string) int {
	c := commands["compile"]
	fs := c.newFlags(env)
	backend := fs.String("backend", "nft", "`nft` or iptables")
	family := fs.String("family", "", "with --backend iptables, print only the `ipv4` or ipv6 ruleset")
	first := fs.Bool("first", false, "with --backend iptables, insert the jumps instead of replacing them (a first load)")
	lf := addLintFlags(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if msg := lf.parse(); msg != "" {
		fmt.Fprintf(env.stderr, "kwl compile: %s\n", msg)
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help compile' for more.\n", c.usage)
		return exitUsage
	}
	b, ok := compile.Lookup(*backend)
	if !ok {
		fmt.Fprintf(env.stderr, "kwl compile: %v\n", compile.UnknownError(*backend))
		return exitUsage
	}
	switch *family {
	case "", "ipv4", "ipv6":
	default:
		fmt.Fprintf(env.stderr, "kwl compile: --family must be ipv4 or ipv6, not %q\n", *family)
		return exitUsage
	}
	if *first && *backend == nft.Name {
		fmt.Fprintf(env.stderr, "kwl compile: --first is for --backend iptables; the nft output replaces the table inet kwl whether or not it is loaded\n")
		return exitUsage
	}
	if *family != "" && *backend == nft.Name {
		fmt.Fprintf(env.stderr, "kwl compile: --family selects one of the iptables rulesets; the nft table inet kwl serves both families\n")
		return exitUsage
	}
	name := fs.Arg(0)
	src, err := readSource(env, name)
	if err != nil {
		return ioError(env, "compile", err)
	}
	_, rs, diags := compile.Load(name, src, b.Lower)
	render := func() (string, error) { return b.Render(rs) }
	if rs, ok := rs.(*iptables.Ruleset); ok && (*first || *family != "") {
		render = func() (string, error) {
			both := rs.RenderReload
			if *first {
				both = rs.Render
			}
			v4, v6, err := both()
			switch *family {
			case "ipv4":
				return v4, err
			case "ipv6":
				return v6, err
			}
			return v4 + "\n" + v6, err
		}
	}
	diags = lf.filter(diags)
	printShown(env, diags, map[string][]byte{name: src})
	if lf.fails(diags) {
		return exitFail
	}
	text, err := render()
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl compile: %s: cannot write the ruleset: %v\n", name, err)
		return exitFail
	}
	io.WriteString(env.stdout, text)
	return exitOK
}
