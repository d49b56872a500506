package main

import (
	"fmt"

	"kwl.dev/kwl/audit"
	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
)

// backendFlag returns the backends that a --backend value names (all of
// the registry's when it is empty), or an error message.
func backendFlag(v string) ([]string, error) {
	if v == "" {
		return compile.Names(), nil
	}
	if _, ok := compile.Lookup(v); !ok {
		return nil, compile.UnknownError(v)
	}
	return []string{v}, nil
}

func runCheck(env *cmdEnv, args []string) int {
	c := commands["check"]
	fs := c.newFlags(env)
	format := fs.String("format", "text", "diagnostics as `text` or json")
	backend := fs.String("backend", "", "lint and test for `nft` or iptables only (default both)")
	lf := addLintFlags(fs)
	auditToo := fs.Bool("audit", false, "also run kwl audit's attacks: a scan that opens a door, or a victim banned by forged packets, fails the check")
	services := fs.String("nmap-services", defaultServices, "with --audit: nmap's table of common ports, `FILE`, as kwl audit reads it; none: no scan of common ports")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if msg := lf.parse(); msg != "" {
		fmt.Fprintf(env.stderr, "kwl check: %s\n", msg)
		return exitUsage
	}
	backends, err := backendFlag(*backend)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl check: %v\n", err)
		return exitUsage
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(env.stderr, "kwl check: --format must be text or json, not %q\n", *format)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help check' for more.\n", c.usage)
		return exitUsage
	}
	code := exitOK
	all := lang.Diagnostics{}
	for _, name := range fs.Args() {
		src, err := readSource(env, name)
		if err != nil {
			code = max(code, ioError(env, "check", err))
			continue
		}
		pol, diags := lang.Load(name, src)
		if !diags.HasErrors() {
			diags = append(diags, compile.Lint(pol, backends)...)
			diags.Sort()
		}
		diags = lf.filter(diags)
		if *format == "json" {
			all = append(all, diags...)
		} else {
			printShown(env, diags, map[string][]byte{name: src})
		}
		if diags.HasErrors() {
			code = max(code, exitFail)
			continue
		}
		tenv := env
		if *format == "json" {
			// The test lines go to stderr: stdout holds one JSON document.
			tenv = &cmdEnv{stdin: env.stdin, stdout: env.stderr, stderr: env.stderr}
		}
		if runTests(tenv, pol, backends) {
			code = max(code, exitFail)
			continue
		}
		if lf.fails(diags) {
			fmt.Fprintf(env.stderr, "kwl check: %s: warnings fail with --strict\n", name)
			code = max(code, exitFail)
			continue
		}
		if *auditToo {
			common, err := commonPorts(*services, 1000)
			var found []audit.Finding
			if err == nil {
				found, err = auditPolicy(pol, backends, audit.Options{Trials: 1000, Seed: 1, Common: common})
			}
			failed := err != nil
			if err != nil {
				fmt.Fprintf(env.stderr, "kwl check: %s: audit: %v\n", name, err)
			}
			for _, f := range found {
				if f.Fails() {
					failed = true
					writeFinding(env.stderr, f, []string{f.Backend})
				}
			}
			if failed {
				fmt.Fprintf(env.stderr, "kwl check: %s: an attack succeeds (kwl audit %s says more)\n", name, name)
				code = max(code, exitFail)
				continue
			}
		}
		if *format == "text" {
			fmt.Fprintf(env.stdout, "%s: ok\n", name)
		}
	}
	if *format == "json" {
		if err := all.PrintJSON(env.stdout); err != nil {
			fmt.Fprintf(env.stderr, "kwl check: %v\n", err)
			return exitUsage
		}
	}
	return code
}
