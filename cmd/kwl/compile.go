package main

import (
	"fmt"
	"io"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/iptables"
	"kwl.dev/kwl/compile/nft"
)

func init() {
	register(&command{
		name:  "compile",
		usage: "kwl compile [--backend nft|iptables] [--family ipv4|ipv6] [--first] FILE",
		short: "compile a policy to an nftables or iptables ruleset",
		long: `Compile reads a policy and prints the ruleset that realizes it on stdout.

With --backend nft (the default) the output is nft -f input for the table
inet kwl: it declares the table, deletes it and declares it again in full,
so that nft loads it as one transaction whether or not the table exists,
and touches no other table.

With --backend iptables the output is iptables-restore input, then
ip6tables-restore input, each headed by a comment naming the tool; load
them with --noflush: they create or flush only kwl's own chains (kwl-input,
kwl-forward, kwl-knock, kwl-svc-NAME, ...) and replace the jumps into them
at the top of INPUT, FORWARD and PREROUTING: each jump is deleted (-D)
and inserted again (-I) in the same commit, so loading the output again,
or a new policy's output, leaves one jump, never none. On a host where
the jumps are not in place yet the -D fails and iptables-restore changes
nothing: load the output of --first once, which only inserts them (and,
loaded twice, inserts them twice). No fixed text can do both, since every
-I adds a rule and every -D removes one whatever the chain holds; kwl
deploy --backend iptables writes its input from the live rules, and also
deletes the chains of an earlier policy that this output does not name.
--family ipv4 or ipv6 prints only one of the two.

A statement means the same on both backends; what a backend cannot do
exactly is an error there (L10: iptables counts whole seconds; L13:
iptables cannot share one limit between IPv4 and IPv6). Warnings on
stderr say what no backend can hide (L07: what happens when a set or
list is full).

A limit N/T admits at most N new connections in any window T: on nft, N
slot sets whose elements live for T ("add @lim_ssh_1_4 { ip saddr limit
rate 1/week burst 1 packets } return", then the next slot, then the
refusal); on iptables, "-m recent --rcheck --seconds T --hitcount N"
refuses and "--set" stamps what is admitted.

Exit status: 0 compiled, 1 errors in the policy, 2 bad usage or a file
that could not be read.

Examples:

	kwl compile examples/sshknock.kwl | nft -c -f -
	kwl compile --backend iptables --family ipv4 --first examples/limit.kwl | iptables-restore --noflush
	kwl compile --backend iptables --family ipv4 examples/limit.kwl | iptables-restore --noflush`,
		run: runCompile,
	})
}

func runCompile(env *cmdEnv, args []string) int {
	c := commands["compile"]
	fs := c.newFlags(env)
	backend := fs.String("backend", "nft", "`nft` or iptables")
	family := fs.String("family", "", "with --backend iptables, print only the `ipv4` or ipv6 ruleset")
	first := fs.Bool("first", false, "with --backend iptables, insert the jumps instead of replacing them (a first load)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
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
	printDiags(env, diags, map[string][]byte{name: src})
	if diags.HasErrors() {
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
