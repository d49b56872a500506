package main

import (
	"bytes"
	"fmt"

	"kwl.dev/kwl/knockd"
)

func runImport(env *cmdEnv, args []string) int {
	c := commands["import"]
	fs := c.newFlags(env)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(env.stderr, "usage: %s\n", c.usage)
		return exitUsage
	}
	name := fs.Arg(0)
	src, err := readSource(env, name)
	if err != nil {
		return ioError(env, "import", err)
	}
	out, err := knockd.Translate(name, src)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl import: %v\n", err)
		return exitFail
	}
	env.stdout.Write(out)
	if n := bytes.Count(out, []byte("# not translated")); n > 0 {
		fmt.Fprintf(env.stderr, "kwl import: %d line(s) of %s not translated: see the comments that say why\n", n, name)
	}
	return exitOK
}
