package main

import (
	"fmt"
	"io"
	"strings"

	"kwl.dev/kwl/lang"
	"kwl.dev/kwl/sim"
)

// runTests runs the test blocks of a checked policy and reports them on
// env's streams; it returns whether a test failed.
func runTests(env *cmdEnv, pol *lang.Policy, backends []string) (failed bool) {
	return !testPolicy(env, pol, backends, false)
}

func runTest(env *cmdEnv, args []string) int {
	c := commands["test"]
	fs := c.newFlags(env)
	backend := fs.String("backend", "", "run on `nft` or iptables only (default both)")
	verbose := fs.Bool("v", false, "print every step")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	backends, err := backendFlag(*backend)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl test: %v\n", err)
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(env.stderr, "usage: %s\nRun 'kwl help test' for more.\n", c.usage)
		return exitUsage
	}
	code := exitOK
	for _, name := range fs.Args() {
		pol, c := loadPolicy(env, "test", name)
		if pol == nil {
			code = max(code, c)
			continue
		}
		if len(pol.Tests) == 0 {
			fmt.Fprintf(env.stdout, "?    %s: no test blocks\n", name)
			continue
		}
		if !testPolicy(env, pol, backends, *verbose) {
			code = max(code, exitFail)
		}
	}
	return code
}

// testPolicy runs the tests of pol on the backends and prints one line
// per test and backend, with the failed steps under a FAIL line. It
// returns whether every test passed.
func testPolicy(env *cmdEnv, pol *lang.Policy, backends []string, verbose bool) bool {
	return writeTests(env.stdout, pol.File, sim.RunTests(pol, backends), verbose)
}

// writeTests prints the results of the tests of file, one line per test
// and backend, with the failed steps (every step when verbose) under it.
// It returns whether every test passed.
func writeTests(w io.Writer, file string, results []sim.TestResult, verbose bool) bool {
	ok := true
	for _, r := range results {
		if r.Passed() {
			fmt.Fprintf(w, "ok   %s: %q (%s)\n", file, r.Test.Name, r.Backend)
		} else {
			ok = false
			fmt.Fprintf(w, "FAIL %s: %q (%s)\n", file, r.Test.Name, r.Backend)
		}
		if r.Err != nil {
			fmt.Fprintf(w, "    %s\n", indent(r.Err.Error()))
			continue
		}
		for i := range r.Steps {
			sr := &r.Steps[i]
			if !sr.OK || verbose {
				fmt.Fprintf(w, "    %s\n", indent(stepLine(sr)))
			}
		}
	}
	return ok
}

func stepLine(sr *sim.StepResult) string {
	if !sr.OK {
		return sr.Message()
	}
	s := fmt.Sprintf("%s: %s", sr.Step.Pos, sr.Verdict)
	if !sr.Rule.IsZero() {
		s += " by " + sr.Rule.String()
	}
	if sr.Explain != "" {
		s += "\n    because: " + sr.Explain
	}
	return s
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }
