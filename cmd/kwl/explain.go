package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/lang"
)

// runExplain prints what diagnostic codes mean: each code named, or the
// list of all of them.
func runExplain(env *cmdEnv, args []string) int {
	c := commands["explain"]
	fs := c.newFlags(env)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		printCodes(env.stdout)
		return exitOK
	}
	for i, w := range fs.Args() {
		code := lang.Code(strings.ToUpper(w))
		if !code.Known() {
			fmt.Fprintf(env.stderr, "kwl explain: no such code %q; kwl help lints lists them\n", w)
			return exitUsage
		}
		if i > 0 {
			fmt.Fprintln(env.stdout)
		}
		explainCode(env.stdout, code)
	}
	return exitOK
}

// printCodes lists every code with its meaning: errors, then lints.
func printCodes(w io.Writer) {
	fmt.Fprintf(w, "Errors (a policy with one is not compiled, tested or deployed):\n\n")
	for _, c := range lang.Codes() {
		if !c.IsLint() {
			fmt.Fprintf(w, "\t%s  %s\n", c, c.Meaning())
		}
	}
	fmt.Fprintf(w, "\nLints (warnings, and notes shown with --notes; # kwl:ignore CODE or\n--ignore CODE silences one, --strict makes warnings fail):\n\n")
	for _, c := range lang.Codes() {
		if c.IsLint() {
			fmt.Fprintf(w, "\t%s  %s\n", c, c.Meaning())
		}
	}
	fmt.Fprintf(w, "\nRun 'kwl explain CODE' for an example and what kwl check says of it.\n")
}

// explainCode prints a code's meaning, its example, and what kwl check
// says of the example on every backend (the message and its hint: the
// fix).
func explainCode(w io.Writer, code lang.Code) {
	fmt.Fprintf(w, "%s: %s\n\nExample:\n\n", code, code.Meaning())
	ex := code.Example()
	src := ex + "\n"
	for _, line := range strings.Split(strings.TrimSuffix(src, "\n"), "\n") {
		fmt.Fprintf(w, "\t%s\n", line)
	}
	pol, diags := lang.Load("example.kwl", []byte(src))
	if !diags.HasErrors() {
		diags = append(diags, compile.Lint(pol, compile.Names())...)
		diags.Sort()
	}
	var own lang.Diagnostics
	for _, d := range diags {
		if d.Code == code {
			own = append(own, d)
		}
	}
	if len(own) == 0 {
		return // an example in words ("a test of 10001 steps")
	}
	var b bytes.Buffer
	own.Print(&b, map[string][]byte{"example.kwl": []byte(src)})
	fmt.Fprintf(w, "\nkwl check says:\n\n")
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		fmt.Fprintf(w, "\t%s\n", line)
	}
}
