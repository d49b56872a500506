package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); when
// empty, the module version of the build is used.
var version = ""

func runVersion(env *cmdEnv, args []string) int {
	c := commands["version"]
	fs := c.newFlags(env)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "usage: %s\n", c.usage)
		return exitUsage
	}
	fmt.Fprintf(env.stdout, "kwl %s %s %s/%s\n", kwlVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func kwlVersion() string {
	if version != "" {
		return version
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 && v == "devel" {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}
