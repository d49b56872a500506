// Command kwl checks, tests, compiles, simulates and deploys kwl policies:
// a declarative language for port knocking and per-source rate limiting.
//
// Run "kwl help" for the list of commands and "kwl help COMMAND" (or
// "kwl COMMAND --help") for one of them.
package main

import (
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes, as the specification of the command line says.
const (
	exitOK    = 0 // clean
	exitFail  = 1 // errors in the policy, failed tests, a kernel that said no
	exitUsage = 2 // bad usage, or a file that could not be read
)

// A command is one of kwl's subcommands: its run function lives in a file
// of its name, its help in help/NAME.txt, and its entry in the list of
// init below.
type command struct {
	name  string
	usage string // "kwl check [flags] FILE..."
	short string // one line for "kwl help"
	long  string // what the command does, shown by --help: help/NAME.txt
	// run executes the command with its arguments (after the command
	// name). It returns the exit code.
	run func(env *cmdEnv, args []string) int
}

// cmdEnv is what a command may touch: its streams. Tests replace them.
type cmdEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

var commands = map[string]*command{}

// helpTexts holds each command's long help, help/NAME.txt: plain text,
// as --help prints it.
//
//go:embed help/*.txt
var helpTexts embed.FS

func init() {
	for _, c := range []*command{
		{name: "check", usage: "kwl check [--backend nft|iptables] [--format text|json] [--strict] [--ignore CODES] [--audit [--nmap-services FILE]] FILE...",
			short: "parse, type-check and lint policies, and run their tests", run: runCheck},
		{name: "test", usage: "kwl test [--backend nft|iptables] [-v] FILE...",
			short: "run the test blocks of policies in the simulator", run: runTest},
		{name: "fmt", usage: "kwl fmt [-w] [-d] [-l] [--check] [FILE|DIR...]",
			short: "format policies in the canonical layout", run: runFmt},
		{name: "import", usage: "kwl import FILE",
			short: "translate a knockd.conf into a kwl policy", run: runImport},
		{name: "compile", usage: "kwl compile [--backend nft|iptables] [--family ipv4|ipv6] [--first] FILE",
			short: "compile a policy to an nftables or iptables ruleset", run: runCompile},
		{name: "sim", usage: "kwl sim [--backend nft|iptables] [--format text|json] [--host ADDR]... [--secret FILE] [--explain] FILE TRACE\n       kwl sim --compare [flags] OLD NEW TRACE",
			short: "replay a pcap or pcapng capture through a policy", run: runSim},
		{name: "audit", usage: "kwl audit [--backend nft|iptables] [--format text|json] [--trials N] [--seed S] [--rate PPS] [--emit DIR] FILE...",
			short: "attack a policy in the simulator: scans, guessing, forged sources, replay", run: runAudit},
		{name: "knock", usage: "kwl knock --policy FILE [--secret FILE] [--gap DUR] [--dry-run] [-4|-6] HOST [SERVICE]",
			short: "send the knocks that open a service of a policy", run: runKnock},
		{name: "deploy", usage: "kwl deploy [--dry-run|--check] [--confirm DUR] [--netns NAME] [--table NAME] [--force] [--force-foreign] [--tokens DUR] FILE\n       kwl deploy --confirm-now [--netns NAME]\n       kwl deploy --renew [--tokens DUR] [--netns NAME --record-dir DIR]\n       kwl deploy --backend iptables [--dry-run] [--confirm DUR] [--netns NAME] FILE",
			short: "load the policy into the running kernel, atomically", run: runDeploy},
		{name: "status", usage: "kwl status [--format text|json|prometheus] [--netns NAME] [--table NAME] [--record-dir DIR]",
			short: "show the live doors, limits and bans", run: runStatus},
		{name: "undeploy", usage: "kwl undeploy [--netns NAME] [--table NAME] [--force-foreign] [--backend nft|iptables]",
			short: "remove kwl's table and chains from the kernel", run: runUndeploy},
		{name: "unban", usage: "kwl unban [--netns NAME] [--service SERVICE] ADDR|PREFIX",
			short: "lift a source's bans now, without a redeploy", run: runUnban},
		{name: "revoke", usage: "kwl revoke [--netns NAME] [--service SERVICE] ADDR|PREFIX",
			short: "close a source's open doors now, without a redeploy", run: runRevoke},
		{name: "restore", usage: "kwl restore [--record-dir DIR] [--netns NAME --record-dir DIR] [--state-dir DIR]",
			short: "load the last deployed policy again (at boot)", run: runRestore},
		{name: "explain", usage: "kwl explain [CODE...]",
			short: "say what a diagnostic code means, with an example and its fix", run: runExplain},
		{name: "version", usage: "kwl version",
			short: "print kwl's version", run: runVersion},
	} {
		register(c)
	}
}

// register adds c to the commands, with its long help.
func register(c *command) {
	b, err := helpTexts.ReadFile("help/" + c.name + ".txt")
	if err != nil {
		panic("kwl " + c.name + " has no help text: " + err.Error())
	}
	c.long = string(b)
	commands[c.name] = c
}

// flagSet is a command's flags: a flag.FlagSet that knows its command,
// so that --help prints the command's help to stdout and a bad flag a
// short usage to stderr.
type flagSet struct {
	*flag.FlagSet
	c   *command
	env *cmdEnv
}

// newFlags returns a flag set for c.
func (c *command) newFlags(env *cmdEnv) *flagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {} // parseFlags says what went wrong
	return &flagSet{FlagSet: fs, c: c, env: env}
}

// help writes c's usage, help and flags to w: what --help and
// "kwl help COMMAND" print.
func (c *command) help(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.usage, strings.TrimSpace(c.long))
	var hasFlags bool
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintf(w, "\nflags:\n")
		out := fs.Output()
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(out)
	}
}

// parseFlags parses args with fs. Flags may come after the arguments
// (kwl check policy.kwl --strict), as in the tools admins know; "--"
// ends the flags. It returns -1 to go on, or the exit code to return at
// once: 0 for --help (the help on stdout), 2 for bad usage (what is
// wrong and the usage line on stderr).
func parseFlags(fs *flagSet, args []string) int {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.c.help(fs.env.stdout, fs.FlagSet)
			return exitOK
		}
		if err != nil {
			fmt.Fprintf(fs.env.stderr, "usage: %s\nRun 'kwl help %s' for more.\n", fs.c.usage, fs.c.name)
			return exitUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	// Parse once more for Args: the flags are set, "--" keeps a
	// positional "-x" from being read as one.
	fs.Parse(append([]string{"--"}, pos...))
	return -1
}

func main() {
	os.Exit(run(&cmdEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

// run is kwl's main without the process: it returns the exit code.
func run(env *cmdEnv, args []string) int {
	// A deploy waiting for confirmation runs kwl again as its watchdog.
	runWatchdog()
	if len(args) == 0 {
		printHelp(env.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 {
			if args[1] == "lints" || args[1] == "codes" {
				printCodes(env.stdout)
				return exitOK
			}
			if c, ok := commands[args[1]]; ok {
				// The command's flags are those its run function defines.
				return c.run(env, []string{"--help"})
			}
			fmt.Fprintf(env.stderr, "kwl help: unknown command %q\n", args[1])
			return exitUsage
		}
		printHelp(env.stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(env.stderr, "kwl: unknown command %q\nRun 'kwl help' for the list of commands.\n", name)
		return exitUsage
	}
	return c.run(env, args[1:])
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, `kwl is a language for port knocking and per-source rate limits.

A policy such as

	knock 1600 opens ssh for 60s; limit ssh 3/60s per source

is checked and tested (kwl check), compiled to nftables or iptables
(kwl compile), replayed over a capture (kwl sim) and loaded into the
kernel (kwl deploy).

usage: kwl COMMAND [flags] [arguments]

commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "\t%-10s %s\n", n, commands[n].short)
	}
	fmt.Fprintf(w, "\nRun 'kwl help COMMAND' for more about a command, 'kwl help lints' for the\ndiagnostic codes.\n")
}
