package main

import "fmt"

// needLinux prints the help of command name when args ask for it (exit
// 0), and otherwise that the command needs Linux (exit 2).
func needLinux(env *cmdEnv, name string, args []string) int {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			c := commands[name]
			c.help(env.stdout, c.newFlags(env).FlagSet)
			return exitOK
		}
	}
	fmt.Fprintf(env.stderr, "kwl %s needs Linux (nf_tables)\n", name)
	return exitUsage
}
