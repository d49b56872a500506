//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"kwl.dev/kwl/compile"
	"kwl.dev/kwl/compile/nft"
	"kwl.dev/kwl/deploy"
	"kwl.dev/kwl/deploy/record"
)

// vetError prints why deploy.Vet refused the policy of file.
func vetError(env *cmdEnv, file string, err error) {
	var empty *deploy.EmptyPolicyError
	var tests *deploy.TestError
	switch {
	case errors.As(err, &empty):
		fmt.Fprintf(env.stderr, "kwl deploy: %s has no statement: deploying it would remove every guard kwl keeps; nothing was applied (kwl undeploy removes kwl's table; --force deploys an empty policy)\n", file)
	case errors.As(err, &tests):
		writeTests(env.stderr, file, tests.Failed, false)
		fmt.Fprintf(env.stderr, "kwl deploy: %s fails its own tests on the %s backend (kwl test --backend %s %s); nothing was applied\n", file, tests.Backend, tests.Backend, file)
	default:
		fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
	}
}

func runDeploy(env *cmdEnv, args []string) int {
	c := commands["deploy"]
	fs := c.newFlags(env)
	dry := fs.Bool("dry-run", false, "print what would change, change nothing")
	confirm := fs.Duration("confirm", 0, "roll back unless confirmed within `DUR`")
	confirmNow := fs.Bool("confirm-now", false, "confirm the deploy waiting for confirmation in the namespace")
	netns := fs.String("netns", "", "work in network namespace `NAME` (/run/netns/NAME, or a path)")
	table := fs.String("table", deploy.DefaultTable, "name of kwl's table")
	backend := fs.String("backend", "nft", "`nft` or iptables")
	stateDir := fs.String("state-dir", deploy.DefaultStateDir, "directory of the previous table while a deploy waits for confirmation")
	force := fs.Bool("force", false, "deploy an empty policy, or one that unguards a service the live table guards")
	forceForeign := fs.Bool("force-foreign", false, "replace a table of that name that kwl did not create")
	recDir := recordDirFlag(fs.FlagSet)
	lf := addLintFlags(fs)
	check := fs.Bool("check", false, "a dry run that exits 1 when the live rules differ from the policy (drift), 0 when they are as it says")
	tokens := fs.Duration("tokens", deploy.DefaultTokens, "load the tokens of secret knocks for `DUR` ahead")
	renew := fs.Bool("renew", false, "load the coming tokens of the deployed policy's secret knocks, keeping its state (kwl-renew.timer)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *tokens <= 0 || *tokens > deploy.MaxTokens {
		fmt.Fprintf(env.stderr, "kwl deploy: --tokens %v: load tokens for a positive time up to %v\n", *tokens, deploy.MaxTokens)
		return exitUsage
	}
	if *check {
		*dry = true
	}
	if msg := lf.parse(); msg != "" {
		fmt.Fprintf(env.stderr, "kwl deploy: %s\n", msg)
		return exitUsage
	}
	o := deploy.Options{NetNS: *netns, Table: *table, StateDir: *stateDir, DryRun: *dry, Confirm: *confirm, Log: env.stderr,
		Force: *force, ForceForeign: *forceForeign, Tokens: *tokens}
	if *renew {
		return renewTokens(env, o, fs.Args(), record.DirFor(*recDir, *netns))
	}
	if *confirmNow {
		if fs.NArg() != 0 {
			fmt.Fprintf(env.stderr, "kwl deploy: --confirm-now takes no file\n")
			return exitUsage
		}
		if err := deploy.ConfirmNow(o); err != nil {
			fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(env.stderr, "kwl deploy: confirmed; the new ruleset stays\n")
		return exitOK
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(env.stderr, "kwl deploy: want one policy FILE, got %d arguments\nusage: %s\n", fs.NArg(), c.usage)
		return exitUsage
	}
	// --confirm 0s is a mistake, not a deploy without confirmation.
	confirmSet := false
	fs.Visit(func(f *flag.Flag) { confirmSet = confirmSet || f.Name == "confirm" })
	if *confirm < 0 || confirmSet && *confirm == 0 {
		fmt.Fprintf(env.stderr, "kwl deploy: --confirm %v: the delay must be positive (leave --confirm out to deploy without confirmation)\n", *confirm)
		return exitUsage
	}
	loader, err := deploy.LoaderFor(*backend)
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
		return exitUsage
	}
	be, _ := compile.Lookup(*backend)
	// The policy is read, compiled and tested before the kernel is
	// touched: a file that cannot be read (exit 2), a policy with errors
	// or failing tests (exit 1) changes nothing.
	file := fs.Arg(0)
	src, err := readSource(env, file)
	if err != nil {
		return ioError(env, "deploy", err)
	}
	pol, rs, diags := compile.Load(file, src, be.Lower)
	diags = lf.filter(diags)
	printShown(env, diags, map[string][]byte{file: src})
	if diags.HasErrors() {
		fmt.Fprintf(env.stderr, "kwl deploy: %s has errors; nothing was applied\n", file)
		return exitFail
	}
	if lf.fails(diags) {
		fmt.Fprintf(env.stderr, "kwl deploy: %s has warnings, which fail with --strict; nothing was applied\n", file)
		return exitFail
	}
	if err := deploy.Vet(pol, *backend, *force); err != nil {
		vetError(env, file, err)
		return exitFail
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if *confirm > 0 && !*dry {
		var stop func()
		o.Confirmed, stop = confirmInput(env, cancel)
		defer stop()
	}
	o.Policy = deploy.PolicyID(src)
	if *dry {
		o.Previous, o.PreviousPolicy = previousRuleset(record.DirFor(*recDir, *netns), be)
	}
	rep, err := deploy.Load(ctx, o, loader.Name(), pol, rs)
	if rep != nil && *dry {
		rep.WriteChanges(env.stdout)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
		return exitFail
	}
	if *dry {
		if *check && rep.Pending() {
			fmt.Fprintf(env.stderr, "kwl deploy: the live rules differ from %s\n", file)
			return exitFail
		}
		return exitOK
	}
	fmt.Fprintf(env.stderr, "kwl deploy: %s\n", rep)
	return recordDeploy(env, *recDir, o, loader.Name(), file, src, pol)
}

// renewTokens is kwl deploy --renew: the recorded policy again, for its
// tokens (deploy.Renew).
func renewTokens(env *cmdEnv, o deploy.Options, args []string, dir string) int {
	if len(args) != 0 {
		fmt.Fprintf(env.stderr, "kwl deploy: --renew takes no file: it renews the policy of the record\n")
		return exitUsage
	}
	if dir == "" {
		fmt.Fprintf(env.stderr, "kwl deploy: --renew with --netns needs the record: --record-dir DIR\n")
		return exitUsage
	}
	res, err := deploy.Renew(context.Background(), o, dir)
	switch {
	case errors.Is(err, deploy.ErrNothingToRenew):
		fmt.Fprintf(env.stderr, "kwl deploy: %v\n", err)
		return exitOK
	case err != nil:
		var pe *deploy.PolicyError
		if errors.As(err, &pe) {
			printShown(env, pe.Diags, map[string][]byte{pe.File: pe.Src})
		}
		fmt.Fprintf(env.stderr, "kwl deploy: renew: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(env.stderr, "kwl deploy: renewed the tokens for %v: %s\n", o.Tokens, res)
	return exitOK
}

// confirmInput returns the channel that confirms, from this process, a
// deploy waiting for confirmation: Enter on the terminal. SIGHUP, SIGINT
// and SIGTERM cancel ctx, which rolls back at once. (Confirmation from
// elsewhere, kwl deploy --confirm-now, goes to the watchdog's socket.)
// stop ends the signal handling.
func confirmInput(env *cmdEnv, cancel context.CancelCauseFunc) (confirmed <-chan struct{}, stop func()) {
	c := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			cancel(fmt.Errorf("signal %v", s))
		}
	}()
	if f, ok := env.stdin.(*os.File); ok && isTerminal(f) {
		go func() {
			// Enter confirms; end of input (a closed terminal) does not.
			if _, err := bufio.NewReader(f).ReadString('\n'); err == nil {
				c <- struct{}{}
			}
		}()
	}
	return c, func() { signal.Stop(sigs) }
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// previousRuleset compiles the policy of the last deploy's record in dir,
// for a dry run's plan to show the rules it removes in nft syntax: nil
// when there is no record of an nft deploy, or it does not compile.
func previousRuleset(dir string, be compile.Backend) (*nft.Ruleset, string) {
	if dir == "" || be.Name() != nft.Name {
		return nil, ""
	}
	rec, err := record.Load(dir)
	if err != nil || rec == nil || rec.State != record.Deployed || rec.Backend != nft.Name || len(rec.Text) == 0 {
		return nil, ""
	}
	_, rs, diags := compile.Load(rec.File, rec.Text, be.Lower)
	prev, ok := rs.(*nft.Ruleset)
	if diags.HasErrors() || !ok {
		return nil, ""
	}
	return prev, deploy.PolicyID(rec.Text)
}
